//! The operator in the loop: approvals, pause, resume, promote, abort; held runs continued,
//! runs that follow earlier ones, and dry runs.

use super::*;
use crate::policy::{ApprovalRule, StageApproval};

fn cmd(id: &str, action: Action, by: &str) -> Command {
    Command {
        id: id.into(),
        run_id: "test".into(),
        action,
        by: by.into(),
        reason: Some("ticket CHG-1".into()),
        at: t(0),
    }
}

fn manual(n: u8) -> StageApproval {
    StageApproval {
        rule: ApprovalRule::Manual { approvals: n },
        timeout: None,
    }
}

fn with_approval(stage: usize, a: StageApproval) -> Plan {
    let mut p = plan(&[10, 25, 50, 100]);
    p.approvals.insert(stage, a);
    p
}

/// A run of `p` held at 25 %: that stage never settles (its split cannot be measured).
fn held_at_25(p: Plan) -> Harness {
    let mut h = Harness::new(p);
    let out = h.run_in(|_, w| {
        let mut tr = healthy(w.primary());
        if w.primary() == 25 {
            tr.requests = Reading::Empty;
        }
        tr
    });
    assert_eq!(out.phase, Phase::Held, "{out:?}");
    assert_eq!(h.live.primary(), 25);
    h
}

/// When each weight was confirmed, in seconds since t(0).
fn confirmed(h: &Harness) -> Vec<(u8, u64)> {
    h.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::WeightConfirmed { weights, .. } => Some((
                weights.primary(),
                e.at.duration_since(t(0)).unwrap().as_secs(),
            )),
            _ => None,
        })
        .collect()
}

fn answers(h: &Harness) -> Vec<(String, bool, String)> {
    h.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Operator {
                action,
                accepted,
                result,
                ..
            } => Some((action.clone(), *accepted, result.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_manual_stage_waits_for_its_approval_and_goes_on_within_one_interval() {
    let mut h = Harness::new(with_approval(1, manual(1)));
    h.commands
        .push((400, cmd("c1", Action::Approve { stage: 1 }, "dba")));
    let out = h.run_healthy();
    assert_eq!(out.phase, Phase::Promoted, "{out:?}");
    let c = confirmed(&h);
    let at25 = c.iter().find(|(w, _)| *w == 25).expect("25 % written").1;
    assert!(
        (400..=415).contains(&at25),
        "25 % confirmed at {at25} s, the approval came at 400 s: {c:?}"
    );
    // The stage before kept being judged while it waited, past its max_duration (300 s).
    assert!(h.events.iter().any(|e| matches!(
        e.kind,
        EventKind::AwaitingApproval {
            stage: 1,
            weight: 25,
            ..
        }
    )));
    let analyses_at_10 = h
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Analyzed { stage: 0, .. }))
        .count();
    assert!(analyses_at_10 > 20, "{analyses_at_10} analyses at 10 %");
    assert_eq!(h.primary_writes(), vec![10, 25, 50, 100]);
    assert!(h.run.state().awaiting.is_none());
    assert_eq!(h.run.state().operator.len(), 1);
}

#[test]
fn a_breach_while_waiting_for_approval_rolls_back() {
    let mut h = Harness::new(with_approval(1, manual(1)));
    let out = h.run_in(|now, w| {
        if now > 200 {
            failing_at(10, 0.2)(now, w)
        } else {
            healthy(w.primary())
        }
    });
    assert_eq!(out.phase, Phase::RolledBack, "{out:?}");
    assert_eq!(h.primary_writes(), vec![10, 0]);
}

#[test]
fn two_approvers_must_be_two_people() {
    let mut h = Harness::new(with_approval(1, manual(2)));
    h.commands
        .push((100, cmd("c1", Action::Approve { stage: 1 }, "alice")));
    h.commands
        .push((200, cmd("c2", Action::Approve { stage: 1 }, "alice")));
    h.commands
        .push((300, cmd("c3", Action::Approve { stage: 1 }, "bob")));
    let out = h.run_healthy();
    assert_eq!(out.phase, Phase::Promoted, "{out:?}");
    let a = answers(&h);
    assert_eq!(a.len(), 3, "{a:?}");
    assert!(a[0].1 && !a[1].1 && a[2].1, "{a:?}");
    assert!(a[1].2.contains("alice already approved"), "{a:?}");
    let at25 = confirmed(&h).iter().find(|(w, _)| *w == 25).unwrap().1;
    assert!((300..=315).contains(&at25), "25 % at {at25} s");
}

#[test]
fn an_approval_may_come_before_the_stage_and_the_first_stage_may_wait() {
    let mut h = Harness::new(with_approval(0, manual(1)));
    h.commands
        .push((90, cmd("c1", Action::Approve { stage: 0 }, "dba")));
    let out = h.run_healthy();
    assert_eq!(out.phase, Phase::Promoted, "{out:?}");
    let at10 = confirmed(&h)[0];
    assert_eq!(at10.0, 10);
    assert!((90..=105).contains(&at10.1), "10 % at {} s", at10.1);

    // Approved ahead of time: no wait at all.
    let mut h = Harness::new(with_approval(2, manual(1)));
    h.commands
        .push((16, cmd("c1", Action::Approve { stage: 2 }, "dba")));
    assert_eq!(h.run_healthy().phase, Phase::Promoted);
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::AwaitingApproval { .. }))
    );
}

#[test]
fn approval_refusals_say_why_and_change_nothing() {
    let mut h = Harness::new(with_approval(2, manual(1)));
    h.commands
        .push((16, cmd("c1", Action::Approve { stage: 1 }, "dba")));
    h.commands
        .push((31, cmd("c2", Action::Approve { stage: 9 }, "dba")));
    let mut other = cmd("c3", Action::Pause, "dba");
    other.run_id = "an-older-run".into();
    h.commands.push((46, other));
    h.commands
        .push((500, cmd("c4", Action::Approve { stage: 2 }, "dba")));
    assert_eq!(h.run_healthy().phase, Phase::Promoted);
    let a = answers(&h);
    assert!(!a[0].1 && a[0].2.contains("needs no approval"), "{a:?}");
    assert!(!a[1].1 && a[1].2.contains("no stage 10"), "{a:?}");
    assert!(!a[2].1 && a[2].2.contains("an-older-run"), "{a:?}");
    assert!(a[3].1, "{a:?}");
    assert!(h.run.state().paused.is_none());
}

#[test]
fn an_unanswered_approval_holds_at_its_timeout() {
    let mut p = with_approval(1, manual(1));
    p.approvals.get_mut(&1).unwrap().timeout = Some(Duration::from_secs(600));
    let mut h = Harness::new(p);
    let out = h.run_healthy();
    assert_eq!(out.phase, Phase::Held, "{out:?}");
    assert!(out.reason.contains("not approved within"), "{}", out.reason);
    assert_eq!(h.primary_writes(), vec![10]);
}

#[test]
fn a_webhook_approves_with_a_2xx() {
    let mut p = plan(&[10, 25, 50, 100]);
    p.approvals.insert(
        2,
        StageApproval {
            rule: ApprovalRule::Webhook {
                url: "https://approvals.example/x".into(),
            },
            timeout: None,
        },
    );
    let mut h = Harness::new(p);
    h.webhook = Some(|now| now >= 500);
    assert_eq!(h.run_healthy().phase, Phase::Promoted);
    let at50 = confirmed(&h).iter().find(|(w, _)| *w == 50).unwrap().1;
    assert!((500..=515).contains(&at50), "50 % at {at50} s");
    let a = answers(&h);
    assert!(
        a.iter().any(|(_, ok, r)| *ok && r.contains("approved")),
        "{a:?}"
    );
}

#[test]
fn pause_holds_the_weight_and_still_rolls_back_on_harm() {
    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    h.commands.push((20, cmd("p", Action::Pause, "sre")));
    h.commands.push((1000, cmd("r", Action::Resume, "sre")));
    assert_eq!(h.run_healthy().phase, Phase::Promoted);
    let c = confirmed(&h);
    assert_eq!(c[0].0, 10);
    assert!(
        c[1].1 >= 1000,
        "25 % written at {} s, during the pause: {c:?}",
        c[1].1
    );
    assert!(h.run.state().paused.is_none());

    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    h.commands.push((20, cmd("p", Action::Pause, "sre")));
    let out = h.run_in(|now, w| {
        if now > 400 {
            failing_at(10, 0.2)(now, w)
        } else {
            healthy(w.primary())
        }
    });
    assert_eq!(out.phase, Phase::RolledBack, "{out:?}");
    assert_eq!(h.primary_writes(), vec![10, 0]);
}

#[test]
fn abort_rolls_back_at_once_and_ends_as_aborted() {
    let mut p = plan(&[10, 25, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    let mut h = Harness::new(p);
    h.commands.push((130, cmd("a", Action::Abort, "sre")));
    let out = h.run_healthy();
    assert_eq!(out.phase, Phase::Aborted, "{out:?}");
    assert_eq!(out.exit_code(), 4);
    assert!(
        out.reason.contains("aborted by sre: ticket CHG-1"),
        "{}",
        out.reason
    );
    // Never stepped: one write to 0 %, straight after the stages written before the abort.
    let w = h.primary_writes();
    assert_eq!(w.last(), Some(&0), "{w:?}");
    assert!(
        w.len() >= 2 && w[..w.len() - 1].windows(2).all(|p| p[0] < p[1]),
        "{w:?}"
    );
}

#[test]
fn promote_skips_the_bake_and_full_goes_to_the_last_stage() {
    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    h.commands
        .push((16, cmd("p", Action::Promote { full: false }, "sre")));
    assert_eq!(h.run_healthy().phase, Phase::Promoted);
    let c = confirmed(&h);
    assert!(
        c[1].0 == 25 && c[1].1 < 60,
        "the bake of 60 s was not skipped: {c:?}"
    );

    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    h.commands
        .push((16, cmd("p", Action::Promote { full: true }, "sre")));
    assert_eq!(h.run_healthy().phase, Phase::Promoted);
    assert_eq!(h.primary_writes(), vec![10, 100]);
    // The last stage is still judged for its bake.
    let c = confirmed(&h);
    assert!(
        h.events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Analyzed { stage: 3, .. }))
            .count()
            >= 4,
        "{c:?}"
    );
}

#[test]
fn promote_never_skips_a_breach_or_an_approval() {
    let mut h = Harness::new(with_approval(2, manual(1)));
    h.commands
        .push((16, cmd("p", Action::Promote { full: true }, "sre")));
    h.commands.push((31, cmd("a", Action::Abort, "sre")));
    assert_eq!(h.run_healthy().phase, Phase::Aborted);
    let a = answers(&h);
    assert!(!a[0].1 && a[0].2.contains("needs"), "{a:?}");

    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    h.commands
        .push((16, cmd("p", Action::Promote { full: false }, "sre")));
    let out = h.run_in(failing_at(10, 0.2));
    assert_eq!(out.phase, Phase::RolledBack, "{out:?}");
    assert_eq!(h.primary_writes(), vec![10, 0]);
}

#[test]
fn a_held_run_continues_at_its_weight_with_plan_weights_only() {
    let h = held_at_25(plan(&[10, 25, 50, 100]));
    let held = h.run.state().clone();
    assert!(
        Run::continue_held(
            plan(&[10, 25, 50, 100]),
            held.clone(),
            cmd("x", Action::Resume, "sre")
        )
        .is_some()
    );

    let mut again = Harness::new(plan(&[10, 25, 50, 100]));
    again.run = Run::continue_held(
        plan(&[10, 25, 50, 100]),
        held,
        cmd("x", Action::Resume, "sre"),
    )
    .unwrap();
    again.live = h.live;
    assert_eq!(again.run_healthy().phase, Phase::Promoted);
    assert_eq!(again.primary_writes(), vec![50, 100], "no walk from 0");
    assert!(again.run.state().operator[0].result.contains("continuing"));
    assert!(
        again
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Operator { .. }))
    );
    // Only a held record is continued.
    let mut done = Harness::new(plan(&[10, 100]));
    done.run_healthy();
    assert!(
        Run::continue_held(
            plan(&[10, 100]),
            done.run.state().clone(),
            cmd("x", Action::Resume, "sre")
        )
        .is_none()
    );
}

#[test]
fn a_new_run_keeps_the_earlier_ones() {
    let mut h = Harness::new(plan(&[10, 100]));
    h.run_in(failing_at(10, 0.2));
    let first = h.run.state().clone();
    assert!(first.ended.is_some());
    let next = Run::new_after(plan(&[10, 100]), "second".into(), Some(first));
    let runs = &next.state().earlier_runs;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, "test");
    assert_eq!(runs[0].outcome.as_ref().unwrap().phase, Phase::RolledBack);
    assert_eq!(runs[0].highest_stage, Some(0));
    // At most RUNS_KEPT are kept, the newest.
    let mut s = next.state().clone();
    for k in 0..(RUNS_KEPT + 5) {
        s = Run::new_after(plan(&[10, 100]), format!("r{k}"), Some(s))
            .state()
            .clone();
    }
    assert_eq!(s.earlier_runs.len(), RUNS_KEPT);
    assert_eq!(
        s.earlier_runs.last().unwrap().run_id,
        format!("r{}", RUNS_KEPT + 3)
    );
}

#[test]
fn a_dry_run_judges_the_live_stage_and_writes_nothing() {
    let live = Weights::from_primary(25).unwrap();
    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    h.run = Run::dry(plan(&[10, 25, 50, 100]), "dry".into());
    h.live = live;
    let out = h.run_healthy();
    assert_eq!(out.phase, Phase::Promoted, "{out:?}");
    assert!(out.reason.starts_with("dry run"), "{}", out.reason);
    assert!(
        out.reason.contains("write stage 3/4 (50%) next"),
        "{}",
        out.reason
    );
    assert!(h.writes.is_empty());

    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    h.run = Run::dry(plan(&[10, 25, 50, 100]), "dry".into());
    h.live = live;
    let out = h.run_in(failing_at(25, 0.2));
    assert_eq!(out.phase, Phase::RolledBack, "{out:?}");
    assert!(
        out.reason.contains("a run would roll back"),
        "{}",
        out.reason
    );
    assert!(h.writes.is_empty());

    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    h.run = Run::dry(plan(&[10, 25, 50, 100]), "dry".into());
    let out = h.run_healthy();
    assert_eq!(out.phase, Phase::PreflightFailed, "{out:?}");
    assert!(out.reason.contains("nothing to judge"), "{}", out.reason);
    assert!(h.writes.is_empty());
}

#[test]
fn status_words_for_waiting_and_paused_runs() {
    let mut run = written_first_stage(with_approval(1, manual(1)), 10);
    assert_eq!(run.state().display_phase(), "settling");
    run.state.awaiting = Some(Awaiting {
        stage: 1,
        since: t(5),
    });
    assert_eq!(run.state().display_phase(), "awaiting_approval");
    run.state.awaiting = None;
    run.state.paused = Some(cmd("p", Action::Pause, "sre"));
    assert_eq!(run.state().display_phase(), "paused");
}

#[test]
fn a_promote_never_skips_a_failed_analysis_below_the_failure_limit() {
    // One analysis at 10 % fails its bound (failure_limit 2: a hold, not yet a rollback);
    // the promote posted then is not taken on it.
    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    h.commands
        .push((16, cmd("p", Action::Promote { full: false }, "sre")));
    let out = h.run_in(|now, w| {
        if w.primary() == 10 && (30..45).contains(&now) {
            failing_at(10, 0.2)(now, w)
        } else {
            healthy(w.primary())
        }
    });
    assert_eq!(out.phase, Phase::Promoted, "{out:?}");
    let failed_at = h
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Analyzed {
                verdict: AnalysisVerdict::Fail { .. },
                ..
            } => Some(e.at),
            _ => None,
        })
        .expect("an analysis failed");
    let at25 = confirmed(&h).iter().find(|(w, _)| *w == 25).unwrap().1;
    assert!(
        t(at25) > failed_at,
        "25 % written at {at25} s, on the failed analysis"
    );
}

#[test]
fn a_pause_holds_the_first_stage_even_once_it_is_approved() {
    let mut h = Harness::new(with_approval(0, manual(1)));
    h.commands.push((5, cmd("p", Action::Pause, "sre")));
    h.commands
        .push((40, cmd("a", Action::Approve { stage: 0 }, "dba")));
    h.commands.push((300, cmd("r", Action::Resume, "sre")));
    assert_eq!(h.run_healthy().phase, Phase::Promoted);
    let first = confirmed(&h)[0];
    assert!(
        first.1 >= 300,
        "10 % written at {} s, while paused",
        first.1
    );
    // Approved before the first stage: preflight ran again before the write.
    let preflights = h
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::PreflightPassed { .. }))
        .count();
    assert!(preflights >= 2, "{preflights} preflights");
}

#[test]
fn a_promote_is_for_its_stage_and_refused_while_a_write_is_pending() {
    let mut run = written_first_stage(plan(&[10, 25, 50, 100]), 10);
    // A write of the next stage is pending (asked, not confirmed).
    run.state.pending = Some(PendingWrite {
        weights: Weights::from_primary(25).unwrap(),
        stage: Some(1),
        attempts: 1,
        probe: false,
    });
    let mut c = cmd("p", Action::Promote { full: false }, "sre");
    c.run_id = "r".into();
    let step = run.step(Observation::Command {
        now: t(20),
        command: c,
    });
    let refused = step.events.iter().any(|e| {
        matches!(&e.kind, EventKind::Operator { accepted: false, result, .. } if result.contains("write is under way"))
    });
    assert!(refused, "{:?}", step.events);
    assert!(run.state().promote.is_none());
}

#[test]
fn a_continued_held_run_is_not_rolled_back_by_the_deadline_of_its_first_stretch() {
    let mut p = plan(&[10, 25, 50, 100]);
    p.deadline = Some(Duration::from_secs(600));
    let h = held_at_25(p.clone());
    // Held for an hour (longer than the deadline) before an operator continues it.
    let mut held = h.run.state().clone();
    held.started = Some(t(0) - Duration::from_secs(3600));
    let mut again = Harness::new(p.clone());
    again.run = Run::continue_held(p, held, cmd("x", Action::Resume, "sre")).unwrap();
    again.live = h.live;
    // The continuation starts at t = 0 of its harness, long after the first stretch began:
    // what counts is the new stretch.
    let out = again.run_healthy();
    assert_eq!(out.phase, Phase::Promoted, "{out:?}");
}

#[test]
fn a_dry_run_that_sees_the_split_move_says_so_and_writes_nothing() {
    let mut p = plan(&[10, 25, 50, 100]);
    p.on_drift = OnDrift::Reassert;
    let mut h = Harness::new(p.clone());
    h.run = Run::dry(p, "dry".into());
    h.live = Weights::from_primary(25).unwrap();
    h.tamper = Some((20, Ok(Weights::from_primary(33).unwrap())));
    let out = h.run_healthy();
    assert_eq!(out.phase, Phase::Held, "{out:?}");
    assert!(
        out.reason.contains("moved during the dry run"),
        "{}",
        out.reason
    );
    assert!(h.writes.is_empty(), "{:?}", h.writes);
}
