//! The sequential gates inside the run: evidence per stage, counts that partition time, harm at once.

use super::*;

/// A plan with one sequential error gate (alpha 0.01 over 3 stages).
pub(super) fn sequential_plan() -> Plan {
    sequential_plan_with(serde_json::json!({"tolerance": "50%", "alpha": 0.01}))
}

/// [`sequential_plan`] with the gate's `vs_dr` section `vs_dr`.
pub(super) fn sequential_plan_with(vs_dr: serde_json::Value) -> Plan {
    let mut p = plan(&[10, 50, 100]);
    let g = serde_json::from_value::<GateSpec>(serde_json::json!({
        "name": "seq", "error_rate": {"vs_dr": vs_dr}
    }))
    .unwrap()
    .compile(&GateBudget::new(100, 3, 1))
    .unwrap();
    p.gates = vec![g];
    p
}

/// Requests and bad requests counted at one site.
pub(super) type Count = (f64, f64);

/// Counts at (primary, DR) over `(from, to]` (seconds after `t(0)`) at the live weights.
type World<'a> = Box<dyn FnMut(u64, u64, Weights) -> (Count, Count) + 'a>;

/// When an operator command is delivered: a condition on the run's state and the time.
type When<'a> = Box<dyn Fn(&RunState, u64) -> bool + 'a>;

/// Whether to kill the run after a step: `Some((down, done))`.
type Kill<'a> = Box<dyn FnMut(&Request, usize) -> Option<(u64, bool)> + 'a>;

/// Drives a sequential plan in a scripted world, killing and restarting it as told.
pub(super) struct SeqDriver<'a> {
    plan: Plan,
    /// The counts at (primary, DR) over `(from, to]`, in seconds after `t(0)`, at the live
    /// weights.
    world: World<'a>,
    /// Asked after every step that did not finish the run, with the step's request and the
    /// analyses so far: `Some((down, done))` kills the run there (after its state was
    /// persisted, as the driver does before every request), with the request carried out
    /// (`done`) or not, and restarts it `down` seconds later.
    kill: Kill<'a>,
    /// What happens to the persisted state before a restart reads it.
    on_restart: Box<dyn FnMut(&mut RunState) + 'a>,
    /// The n-th count (1-based) fails.
    fail_count: Option<usize>,
    /// Stop after this, the run still going.
    until: u64,
    /// Operator commands, each delivered after the first sleep at whose end its condition
    /// holds on the run's state.
    commands: Vec<(When<'a>, Command)>,
    /// A dry run at this live split.
    dry: Option<Weights>,
    /// Someone else sets the live split, once, after the first sleep at whose end the
    /// condition holds.
    tamper: Option<(When<'a>, Weights)>,
}

/// What a driven run did.
pub(super) struct Driven {
    /// How it ended; `None`: still going at `until`.
    pub(super) outcome: Option<Outcome>,
    /// Every analysis's counting interval `(since, now)`.
    pub(super) asked: Vec<(SystemTime, SystemTime)>,
    /// The gate's e-process intervals at the start of each stage written.
    pub(super) at_stage_start: Vec<u32>,
    /// Every event, of every process of the run.
    pub(super) events: Vec<Event>,
    /// The state at the end.
    pub(super) state: RunState,
    /// The state right after each restart's first step, and when it was.
    pub(super) resumed: Vec<(u64, RunState)>,
}

impl<'a> SeqDriver<'a> {
    /// `plan` in a world where the primary fails `primary_rate(weight)` of its requests and
    /// DR 1 %, at 1000 requests a second; never killed; for at most a day.
    pub(super) fn new(plan: Plan, primary_rate: impl Fn(u8) -> f64 + 'a) -> SeqDriver<'a> {
        SeqDriver {
            plan,
            world: Box::new(move |from, to, live| {
                let n = 1000.0 * (to - from) as f64;
                let share = f64::from(live.primary()) / 100.0;
                let (p, d) = (n * share, n * (1.0 - share));
                (
                    (p, (p * primary_rate(live.primary())).round()),
                    (d, (d * 0.01).round()),
                )
            }),
            kill: Box::new(|_, _| None),
            on_restart: Box::new(|_| {}),
            fail_count: None,
            until: 86_400,
            commands: Vec::new(),
            dry: None,
            tamper: None,
        }
    }

    /// Counts from `world` instead.
    pub(super) fn world(
        mut self,
        world: impl FnMut(u64, u64, Weights) -> (Count, Count) + 'a,
    ) -> Self {
        self.world = Box::new(world);
        self
    }

    /// Kills the run as `kill` says (see [`SeqDriver::kill`]).
    pub(super) fn kill(
        mut self,
        kill: impl FnMut(&Request, usize) -> Option<(u64, bool)> + 'a,
    ) -> Self {
        self.kill = Box::new(kill);
        self
    }

    /// Kills the run after every `every`-th analysis that asks for a sleep (mid-stage), and
    /// restarts it `down` seconds later.
    pub(super) fn kill_every(self, every: usize, down: u64) -> Self {
        self.kill(move |r, n| {
            (matches!(r, Request::Sleep(_)) && n > 0 && n % every == 0).then_some((down, false))
        })
    }

    /// Changes the persisted state before each restart reads it.
    pub(super) fn on_restart(mut self, f: impl FnMut(&mut RunState) + 'a) -> Self {
        self.on_restart = Box::new(f);
        self
    }

    pub(super) fn fail_count(mut self, n: usize) -> Self {
        self.fail_count = Some(n);
        self
    }

    /// Delivers `action` after the first sleep at whose end `when(state, now)` holds.
    pub(super) fn command(
        mut self,
        when: impl Fn(&RunState, u64) -> bool + 'a,
        action: Action,
    ) -> Self {
        let command = Command {
            id: format!("c{}", self.commands.len()),
            run_id: "seq".into(),
            action,
            by: "sre".into(),
            reason: None,
            at: t(0),
        };
        self.commands.push((Box::new(when), command));
        self
    }

    /// Someone else writes `to` after the first sleep at whose end `when` holds.
    pub(super) fn tamper(
        mut self,
        when: impl Fn(&RunState, u64) -> bool + 'a,
        to: Weights,
    ) -> Self {
        self.tamper = Some((Box::new(when), to));
        self
    }

    /// A dry run (`cutover run --dry-run`) of the stage live at `live`.
    pub(super) fn dry(mut self, live: Weights) -> Self {
        self.dry = Some(live);
        self
    }

    pub(super) fn until(mut self, until: u64) -> Self {
        self.until = until;
        self
    }

    pub(super) fn drive(mut self) -> Driven {
        use crate::judge::gate::IntervalCounts;
        use crate::metrics::source::{CountReading, Counts};
        let mut run = match self.dry {
            Some(_) => Run::dry(self.plan.clone(), "seq".into()),
            None => Run::new(self.plan.clone(), "seq".into()),
        };
        let mut now = 0u64;
        let mut live = self.dry.unwrap_or(Weights::ALL_DR);
        let mut d = Driven {
            outcome: None,
            asked: Vec::new(),
            at_stage_start: Vec::new(),
            events: Vec::new(),
            state: run.state().clone(),
            resumed: Vec::new(),
        };
        let mut restarting = false;
        // The last analysis already answered: a kill is asked about once per analysis.
        let mut killed_at = usize::MAX;
        let mut obs = Observation::Started {
            now: t(0),
            propagation: Duration::ZERO,
            live: Ok(live),
        };
        for _ in 0..100_000 {
            let step = run.step(obs);
            d.events.extend(step.events);
            d.state = run.state().clone();
            if std::mem::take(&mut restarting) {
                d.resumed.push((now, d.state.clone()));
            }
            if let Request::Finish(o) = step.request {
                d.outcome = Some(o);
                return d;
            }
            if now > self.until {
                return d;
            }
            let analyses = d.asked.len();
            let kill = if killed_at == analyses && matches!(step.request, Request::Sleep(_)) {
                None
            } else {
                (self.kill)(&step.request, analyses)
            };
            if let Some((down, done)) = kill {
                killed_at = analyses;
                if let (true, Request::SetWeights(w)) = (done, &step.request) {
                    live = *w;
                }
                now += down;
                let mut state = run.state().clone();
                (self.on_restart)(&mut state);
                run = Run::resume(self.plan.clone(), state);
                restarting = true;
                obs = Observation::Started {
                    now: t(now),
                    propagation: Duration::ZERO,
                    live: Ok(live),
                };
                continue;
            }
            obs = match step.request {
                Request::Finish(_) => unreachable!("returned above"),
                Request::AskApproval { .. } => unreachable!("no approvals in these plans"),
                Request::Preflight => Observation::PreflightDone {
                    now: t(now),
                    results: vec![],
                },
                Request::SetWeights(w) => {
                    live = w;
                    d.at_stage_start.push(u32::MAX);
                    Observation::WeightsSet {
                        now: t(now),
                        weights: w,
                    }
                }
                Request::Sleep(s) => {
                    if d.at_stage_start.last() == Some(&u32::MAX) {
                        let n = run.state().evidence.get("seq").map_or(0, |e| e.intervals);
                        *d.at_stage_start.last_mut().unwrap() = n;
                    }
                    now += s.as_secs();
                    let state = run.state();
                    if self
                        .tamper
                        .as_ref()
                        .is_some_and(|(when, _)| when(state, now))
                    {
                        live = self.tamper.take().map_or(live, |(_, to)| to);
                    }
                    match self.commands.iter().position(|(when, _)| when(state, now)) {
                        Some(k) => Observation::Command {
                            now: t(now),
                            command: self.commands.remove(k).1,
                        },
                        None => Observation::Slept { now: t(now) },
                    }
                }
                Request::Analyze { since, .. } => {
                    let from = since["seq"];
                    d.asked.push((from, t(now)));
                    let from_s = from.duration_since(t(0)).unwrap().as_secs();
                    let ((pn, pb), (dn, db)) = (self.world)(from_s, now, live);
                    let counts = |total: f64, bad: f64| {
                        CountReading::Counted(Counts {
                            total,
                            bad,
                            resets: 0,
                        })
                    };
                    let c = IntervalCounts {
                        from,
                        primary: if self.fail_count == Some(d.asked.len()) {
                            CountReading::Error("prometheus down".into())
                        } else {
                            counts(pn, pb)
                        },
                        dr: counts(dn, db),
                        dispersion: Some(crate::judge::eprocess::Dispersion::POISSON),
                    };
                    let secs = (now - from_s).max(1) as f64;
                    Observation::Analyzed {
                        now: t(now),
                        analysis: Analysis {
                            at: t(now),
                            window: Duration::from_secs(15),
                            primary_rate: Reading::Value(pn / secs),
                            dr_rate: Reading::Value(dn / secs),
                            // "seq", and any other (threshold) gate of the plan on the
                            // same counts' rates.
                            gates: self
                                .plan
                                .gates
                                .iter()
                                .map(|g| GateMeasurement {
                                    name: g.name.clone(),
                                    window: Duration::from_secs(15),
                                    primary_requests: Reading::Value(pn),
                                    primary: match g.name.as_str() {
                                        "seq" => Reading::Empty,
                                        _ => Reading::Value(pb / pn.max(1.0)),
                                    },
                                    dr: match g.name.as_str() {
                                        "seq" => Reading::Empty,
                                        _ => Reading::Value(db / dn.max(1.0)),
                                    },
                                    counts: (g.name == "seq").then(|| c.clone()),
                                })
                                .collect(),
                            guards: Vec::new(),
                        },
                        live: Some(Ok(live)),
                    }
                }
            };
        }
        panic!("no end");
    }
}

/// Drives a sequential plan never killed: each analysis counts `rps * (now - since)`
/// requests per site at the live split, the primary failing at `primary_rate(weight)` and
/// DR at 1 %. `fail_count` makes the n-th count fail. Returns the outcome, every (since,
/// now) asked for, and the evidence at the start of each stage.
fn drive_sequential(
    primary_rate: impl Fn(u8) -> f64,
    fail_count: Option<usize>,
) -> (Outcome, Vec<(SystemTime, SystemTime)>, Vec<u32>, RunState) {
    let mut driver = SeqDriver::new(sequential_plan(), primary_rate);
    if let Some(n) = fail_count {
        driver = driver.fail_count(n);
    }
    let d = driver.drive();
    (
        d.outcome.expect("an end"),
        d.asked,
        d.at_stage_start,
        d.state,
    )
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
    let weights: Vec<u8> = state.history.iter().map(|h| h.weights.primary()).collect();
    assert_eq!(weights, vec![10, 50, 0]);
    assert_eq!(state.counters.failures, 1, "no failure_limit to wait for");
}

/// `certify: cumulative` carries "no worse" evidence into the next stage (harm starts
/// afresh): a healthy primary is certified in fewer analyses after the first stage.
#[test]
fn cumulative_certification_carries_no_worse_evidence_across_stages() {
    let analyses = |certify| {
        let mut plan = sequential_plan();
        plan.certify = certify;
        for st in &mut plan.stages {
            st.bake = Duration::ZERO;
        }
        // 400 requests a second, 1 % errors at both sites: each stage needs evidence.
        let d = SeqDriver::new(plan, |_| 0.01)
            .world(|from, to, live| {
                let n = 400.0 * (to - from) as f64;
                let (p, d) = (n * f64::from(live.primary()) / 100.0, n);
                let d = d - p;
                ((p, (p * 0.01).round()), (d, (d * 0.01).round()))
            })
            .drive();
        let o = d.outcome.expect("an end");
        let share = d.state.evidence.get("seq").and_then(|e| e.ok_share);
        (o.phase, d.asked.len(), share)
    };
    let per_stage = analyses(crate::policy::model::Certify::PerStage);
    let cumulative = analyses(crate::policy::model::Certify::Cumulative);
    assert_eq!(cumulative.0, Phase::Promoted);
    assert!(
        per_stage.0 == Phase::Held || cumulative.1 < per_stage.1,
        "{cumulative:?} vs {per_stage:?}"
    );
    // At 100 %, where DR serves nothing: the carried evidence and the comparison with DR's
    // pooled stages share beta; without carried evidence, most of it is the comparison's.
    use crate::judge::eprocess::{CUMULATIVE_SCARCE_DR_OK_SHARE, SCARCE_DR_OK_SHARE};
    assert_eq!(cumulative.2, Some(CUMULATIVE_SCARCE_DR_OK_SHARE));
    if per_stage.0 == Phase::Promoted {
        assert_eq!(per_stage.2, Some(SCARCE_DR_OK_SHARE));
    }
}

/// The absolute "no worse" evidence each stage of a `certify: cumulative` run (10, 50,
/// 100 %, absolute tolerance 0.1 %) starts with, before its first analysis, as `(stage,
/// sum of |ln M| over the grid, whether relative evidence was carried)`, with both sites
/// at `rate` (400 requests a second); and how the run ended.
fn cumulative_start_evidence(rate: f64) -> (Option<Phase>, Vec<(usize, f64, bool)>) {
    use std::cell::RefCell;
    let mut plan = sequential_plan_with(serde_json::json!(
        {"tolerance": "50%", "alpha": 0.01, "absolute_tolerance": "0.1%"}
    ));
    plan.certify = crate::policy::model::Certify::Cumulative;
    for st in &mut plan.stages {
        st.bake = Duration::ZERO;
    }
    let seen: RefCell<Vec<(usize, f64, bool)>> = RefCell::new(Vec::new());
    let d = SeqDriver::new(plan, move |_| rate)
        .world(|from, to, live| {
            let n = 400.0 * (to - from) as f64;
            let p = n * f64::from(live.primary()) / 100.0;
            let d = n - p;
            ((p, (p * rate).round()), (d, (d * rate).round()))
        })
        .command(
            |s, _| {
                if let (Some(i), Some(ep)) = (s.stage, s.evidence.get("seq")) {
                    let mut seen = seen.borrow_mut();
                    if ep.intervals == 0 && seen.last().is_none_or(|l| l.0 != i) {
                        let abs = ep.abs_ok.iter().map(|x| x.abs()).sum::<f64>();
                        seen.push((i, abs, ep.ok.iter().any(|x| *x != 0.0)));
                    }
                }
                false
            },
            Action::Pause,
        )
        .drive();
    (d.outcome.map(|o| o.phase), seen.into_inner())
}

/// `certify: cumulative` carries the absolute "no worse" evidence only where it is tested
/// against the same rate: into a stage judged against `absolute_tolerance` again, not into
/// a 100 % stage whose absolute test is against DR's pooled stages at a higher rate. A
/// primary at 1 %, far above a 0.1 % tolerance, would otherwise bring a deficit there that
/// only depends on the tolerance.
#[test]
fn cumulative_absolute_evidence_carries_only_against_the_same_rate() {
    let (phase, seen) = cumulative_start_evidence(0.01);
    assert_eq!(phase, Some(Phase::Promoted));
    let at = |i: usize| seen.iter().find(|s| s.0 == i).copied();
    // 50 %: both carried from 10 % (the same thresholds); the absolute evidence against
    // 0.1 % is a deficit for a primary at 1 %.
    let (_, abs_50, ok_50) = at(1).expect("the 50 % stage started");
    assert!(abs_50 > 1.0 && ok_50, "{seen:?}");
    // 100 %: DR's pooled 1 % puts the rate at about 1.5 %: the relative evidence carried,
    // the absolute test afresh.
    let (_, abs_100, ok_100) = at(2).expect("the 100 % stage started");
    assert!(ok_100, "{seen:?}");
    assert_eq!(abs_100, 0.0, "{seen:?}");
}

/// With no error at DR, the 100 % stage's absolute test is against the tolerance itself
/// (DR's pooled rate bounds nothing above it): the evidence carries there too.
#[test]
fn cumulative_absolute_evidence_carries_into_100_against_an_error_free_dr() {
    let (phase, seen) = cumulative_start_evidence(0.0);
    assert_eq!(phase, Some(Phase::Promoted));
    let at_100 = seen.iter().find(|s| s.0 == 2).copied();
    assert!(at_100.is_some_and(|(_, abs, _)| abs > 0.0), "{seen:?}");
}
