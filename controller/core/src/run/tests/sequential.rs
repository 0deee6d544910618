//! The sequential gates inside the run: evidence per stage, counts that partition time, harm at once.

use super::*;

/// A plan with one sequential error gate (alpha 0.01 over 3 stages).
fn sequential_plan() -> Plan {
    let mut p = plan(&[10, 50, 100]);
    let g = serde_json::from_value::<GateSpec>(serde_json::json!({
        "name": "seq", "error_rate": {"vs_dr": {"tolerance": "50%", "alpha": 0.01}}
    }))
    .unwrap()
    .compile(&GateBudget::new(100, 3, 1))
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
        propagation: Duration::ZERO,
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
                let share = f64::from(live.primary()) / 100.0;
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
                        counts(n * share, primary_rate(live.primary()))
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
    let weights: Vec<u8> = state.history.iter().map(|h| h.weights.primary()).collect();
    assert_eq!(weights, vec![10, 50, 0]);
    assert_eq!(state.counters.failures, 1, "no failure_limit to wait for");
}
