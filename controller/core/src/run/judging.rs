//! Judging a stage: each analysis's gates, the stage verdict, the share check, and what an
//! inconclusive stage does.

use std::time::SystemTime;

use super::*;

impl Run {
    pub(super) fn on_analyzed(
        &mut self,
        now: SystemTime,
        analysis: Analysis,
        live: Option<Result<Weights, String>>,
        ev: &mut Vec<Event>,
    ) -> Request {
        let (Some(i), Some(started)) = (self.state.stage, self.state.stage_started) else {
            return self.unexpected(now, "an analysis outside a stage", ev);
        };
        if !matches!(self.state.phase, Phase::Settling | Phase::Judging) {
            return self.unexpected(now, "an analysis", ev);
        }
        let stage = self.plan.stages[i];
        // During a probe DR serves the probe's share: judged like any stage where it serves.
        let probing = self.state.probe.as_ref().is_some_and(|p| p.since.is_some());
        let dr_serves = stage.weight < StageWeight::FULL || probing;
        let empty = BTreeMap::new();
        let baselines = if dr_serves {
            &empty
        } else {
            &self.state.dr_baselines
        };
        let results = analysis.evaluate(&self.plan.gates, baselines, &mut self.state.evidence);
        if dr_serves && !probing {
            for (g, r) in self.plan.gates.iter().zip(&results) {
                if let (true, Some(d)) = (g.is_relative(), r.dr) {
                    self.state.dr_baselines.insert(g.name.clone(), d);
                }
            }
        }
        let verdict = summarize(&results);
        let share = analysis.primary_share();
        let elapsed = now.duration_since(started).unwrap_or_default();
        let phase = self.state.phase;
        let sv = judge(&mut self.state.counters, &verdict, self.plan.limits);
        let push = |decision: String, ev: &mut Vec<Event>| {
            ev.push(Event {
                at: now,
                kind: EventKind::Analyzed {
                    stage: i,
                    phase,
                    share,
                    results: results.clone(),
                    verdict: verdict.clone(),
                    decision,
                },
            })
        };
        // A breach is acted on in either phase: settling never hides a failing primary.
        match &sv {
            StageVerdict::Rollback { reason } if self.probes_harm(i, &verdict, &results) => {
                push(
                    "probe: judge against DR's concurrent traffic first".into(),
                    ev,
                );
                // Harm counted a failure; a probe is not one (its verdict is the probe's).
                self.state.counters.failures = self.state.counters.failures.saturating_sub(1);
                return self.start_probe(i, reason.clone(), &results, now, ev);
            }
            StageVerdict::Rollback { reason } => {
                push("roll back".into(), ev);
                let reason = format!("{} {reason}", self.stage_label(i));
                return self.begin_rollback(RollbackCause::Breach, reason, now, ev);
            }
            StageVerdict::Freeze { reason } => {
                push("freeze".into(), ev);
                return self.finish(
                    Phase::Held,
                    format!(
                        "{}: {reason}; traffic held at {}",
                        self.stage_label(i),
                        self.weights_text()
                    ),
                );
            }
            _ if self.probes_suspect(i, &results) => {
                push(
                    "probe: above DR's earlier rate; judge against more of DR's concurrent traffic"
                        .into(),
                    ev,
                );
                let reason = results
                    .iter()
                    .filter(|r| r.suspect)
                    .map(|r| {
                        format!(
                            "{}: above DR's earlier stages, not yet above its holdout; {}",
                            r.name, r.reason
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return self.start_probe(i, reason, &results, now, ev);
            }
            _ => {}
        }
        let mut drift_events = Vec::new();
        if let Some(request) = self.on_live(now, i, live, &mut drift_events) {
            push("drift".into(), ev);
            ev.extend(drift_events);
            return request;
        }
        ev.extend(drift_events);
        let guard_hold = match self.on_guards(now, i, &analysis.guards, ev) {
            Ok(hold) => hold,
            Err(request) => {
                push("guard failure limit reached".into(), ev);
                return request;
            }
        };
        if let Some(request) = self.during_probe(i, elapsed, now, &push, ev) {
            return request;
        }
        // The bake restarts after a drift (even one cleared just now); max_duration counts
        // from the stage's start.
        let baked = self
            .state
            .rebake_from
            .map_or(elapsed, |r| now.duration_since(r).unwrap_or_default());
        if phase == Phase::Settling {
            let target = f64::from(stage.weight.get()) / 100.0;
            let converged =
                share.is_some_and(|s| (s - target).abs() <= self.plan.settle_tolerance + 1e-9);
            if converged && elapsed >= self.plan.burn_in {
                push("settled; judging starts".into(), ev);
                self.state.phase = Phase::Judging;
                self.state.judging_started = Some(now);
                self.state.counters.consecutive_passes = 0;
                ev.push(Event {
                    at: now,
                    kind: EventKind::Settled {
                        stage: i,
                        share: share.unwrap_or_default(),
                    },
                });
                return Request::Sleep(stage.interval);
            }
            let failed = [&analysis.primary_rate, &analysis.dr_rate]
                .into_iter()
                .find_map(|r| match r {
                    crate::Reading::Error(e) => Some(e.clone()),
                    _ => None,
                });
            let why = match (share, failed) {
                (None, Some(e)) => format!("the traffic split cannot be measured: {e}"),
                (None, None) => "no traffic observed at either site".to_string(),
                (Some(s), _) => format!(
                    "observed primary share {:.1}% is not within {:.1} points of the target {}%",
                    s * 100.0,
                    self.plan.settle_tolerance * 100.0,
                    stage.weight
                ),
            };
            if elapsed >= stage.max_duration {
                push("inconclusive".into(), ev);
                return self.inconclusive(
                    format!(
                        "{} never settled within max_duration {}: {why}",
                        self.stage_label(i),
                        fmt_d(stage.max_duration)
                    ),
                    now,
                    ev,
                );
            }
            push(format!("settling: {why}"), ev);
            return Request::Sleep(stage.interval);
        }
        let gates_sv = sv.clone();
        let sv = match (sv, share) {
            // Judging at a split other than the stage's is judging something else.
            (StageVerdict::Passing, s) if !self.share_near(stage.weight.get(), s, &analysis) => {
                StageVerdict::Hold {
                    reason: format!(
                        "the observed primary share {} is not within {:.1} points of the stage's {}%; never a pass",
                        s.map(|s| format!("{:.1}%", s * 100.0))
                            .unwrap_or_else(|| "(none)".into()),
                        self.plan.settle_tolerance * 100.0,
                        stage.weight
                    ),
                }
            }
            (StageVerdict::Passing, _) if self.state.drift.is_some() => StageVerdict::Hold {
                reason: format!(
                    "drift: {} (on_drift: hold); nothing advances while the live split is not the run's",
                    self.state.drift.clone().unwrap_or_default()
                ),
            },
            // A failing guard, or capacity that does not cover the next stage: never advance.
            (StageVerdict::Passing, _) if guard_hold.is_some() => StageVerdict::Hold {
                reason: guard_hold.clone().unwrap_or_default(),
            },
            (sv, _) => sv,
        };
        // An operator's promote skips the rest of the bake (and an undecided verdict), never
        // a breach, a drift, or a split that is not the stage's.
        let overridden = sv != gates_sv
            || self.state.drift.is_some()
            || !self.share_near(stage.weight.get(), share, &analysis);
        // Only the verdict of this analysis counts: every gate passed, or sequential gates
        // still gathering evidence. A failed analysis below `failure_limit`, missing data, a
        // query error, a failing guard or capacity short of the next stage is never skipped.
        let promoting = self.state.paused.is_none()
            && !overridden
            && guard_hold.is_none()
            && matches!(
                verdict,
                AnalysisVerdict::Pass | AnalysisVerdict::Undecided { .. }
            )
            && matches!(sv, StageVerdict::Passing | StageVerdict::Hold { .. })
            && self
                .state
                .promote
                .as_ref()
                .is_some_and(|p| p.stage == Some(i));
        // A paused stage, or one whose successor waits for approval, is not timed out.
        let waiting = self.state.paused.is_some() || self.state.awaiting.is_some();
        // A held stage that is watched advances only on an operator's promote.
        let held = self.state.held.is_some();
        match sv {
            StageVerdict::Passing if (baked >= stage.bake && !held) || promoting => {
                if let Some(p) = &self.state.paused {
                    push(
                        format!(
                            "passing; paused by {}: not advancing until `cutover resume`",
                            p.by
                        ),
                        ev,
                    );
                    return Request::Sleep(stage.interval);
                }
                self.leave_stage(i, now, push, ev)
            }
            StageVerdict::Hold { .. } if promoting => self.leave_stage(i, now, push, ev),
            StageVerdict::Passing | StageVerdict::Hold { .. }
                if elapsed >= stage.max_duration && !waiting =>
            {
                let why = match &sv {
                    StageVerdict::Hold { reason } => reason.clone(),
                    _ if held => "held at max_duration; no operator promoted it".into(),
                    _ => "gates passing but bake not over".into(),
                };
                let reason = format!(
                    "{} undecided after max_duration {}: {why}",
                    self.stage_label(i),
                    fmt_d(stage.max_duration)
                );
                if let Some(request) = self.watch_held(i, phase, reason.clone(), now, &push, ev) {
                    return request;
                }
                push("inconclusive".into(), ev);
                let reason = match self.state.held.take() {
                    Some(h) if self.state.drift.is_some() => format!(
                        "{}; watched until a drift ended the watch: no harm seen",
                        h.reason
                    ),
                    Some(h) => format!(
                        "{}; watched for {} more (analysis.watch_held): no harm seen",
                        h.reason,
                        fmt_d(self.plan.watch_held)
                    ),
                    None => reason,
                };
                self.inconclusive(reason, now, ev)
            }
            StageVerdict::Passing => {
                let left = stage.bake.saturating_sub(baked);
                let paused = match &self.state.paused {
                    Some(p) => format!(" (paused by {})", p.by),
                    None => String::new(),
                };
                push(format!("passing; bake ends in {}{paused}", fmt_d(left)), ev);
                Request::Sleep(stage.interval)
            }
            StageVerdict::Hold { reason } => {
                push(format!("hold: {reason}"), ev);
                Request::Sleep(stage.interval)
            }
            StageVerdict::Rollback { .. } | StageVerdict::Freeze { .. } => {
                unreachable!("handled above")
            }
        }
    }

    /// Stage `i` passed (its bake, or an operator's promote): on to the next stage, or to
    /// the last with `promote --full`, unless an approval is awaited.
    fn leave_stage(
        &mut self,
        i: usize,
        now: SystemTime,
        push: impl Fn(String, &mut Vec<Event>),
        ev: &mut Vec<Event>,
    ) -> Request {
        let (target, how) = match self.state.promote.take() {
            Some(PendingPromote { command: cmd, .. }) => {
                let full = matches!(cmd.action, Action::Promote { full: true });
                let last_judged = self.plan.stages.iter().rposition(|s| s.judged).unwrap_or(i);
                let target = if full { last_judged.max(i + 1) } else { i + 1 };
                (target, format!(" (promoted by {})", cmd.by))
            }
            None => (i + 1, String::new()),
        };
        if self.state.awaiting.map(|a| a.stage) == Some(target) {
            push(
                format!(
                    "passing; waiting for approval of {}",
                    self.stage_label(target)
                ),
                ev,
            );
        } else {
            push(format!("advance{how}"), ev);
            ev.push(Event {
                at: now,
                kind: EventKind::StagePassed { stage: i },
            });
        }
        self.advance_to(target, now, ev)
    }

    /// Whether an observed share is the stage's weight, give or take the settle tolerance and
    /// three standard errors of a share measured on this many requests (a quiet service's
    /// share is noisy; noise alone must not hold a healthy stage).
    pub(super) fn share_near(&self, weight: u8, share: Option<f64>, analysis: &Analysis) -> bool {
        let Some(s) = share else {
            return false;
        };
        let target = f64::from(weight) / 100.0;
        let n = (analysis.primary_rate.finite().unwrap_or(0.0)
            + analysis.dr_rate.finite().unwrap_or(0.0))
            * analysis.window.as_secs_f64();
        let noise = if n >= 1.0 {
            3.0 * (target * (1.0 - target) / n).sqrt()
        } else {
            1.0
        };
        (s - target).abs() <= self.plan.settle_tolerance + noise + 1e-9
    }

    /// A stage held inconclusive while judging keeps being judged for `watch_held` (a
    /// regression that starts later is still rolled back). `Some(request)` while watching;
    /// `None` once the watch is over (or there is none): the run is then held as before.
    fn watch_held(
        &mut self,
        i: usize,
        phase: Phase,
        reason: String,
        now: SystemTime,
        push: &impl Fn(String, &mut Vec<Event>),
        ev: &mut Vec<Event>,
    ) -> Option<Request> {
        let watch = self.plan.watch_held;
        if watch.is_zero() || phase != Phase::Judging || self.state.drift.is_some() {
            return None;
        }
        let interval = self.plan.stages[i].interval;
        match &self.state.held {
            None => {
                let decision = format!(
                    "held at {}; still judged for {} (analysis.watch_held): harm rolls back, `cutover promote` advances",
                    self.weights_text(),
                    fmt_d(watch)
                );
                self.begin_watch(i, reason, decision, now, push, ev);
                Some(Request::Sleep(interval))
            }
            Some(h) if now.duration_since(h.since).unwrap_or_default() < watch => {
                let left = watch.saturating_sub(now.duration_since(h.since).unwrap_or_default());
                push(
                    format!("held; watching for harm ({} left)", fmt_d(left)),
                    ev,
                );
                Some(Request::Sleep(interval))
            }
            Some(_) => None,
        }
    }

    /// A held stage starts being watched for `watch_held`: the decision, the event, the
    /// record.
    pub(super) fn begin_watch(
        &mut self,
        i: usize,
        reason: String,
        decision: String,
        now: SystemTime,
        push: &impl Fn(String, &mut Vec<Event>),
        ev: &mut Vec<Event>,
    ) {
        push(decision, ev);
        ev.push(Event {
            at: now,
            kind: EventKind::HeldWatching {
                stage: i,
                reason: reason.clone(),
                until: now + self.plan.watch_held,
            },
        });
        self.state.held = Some(HeldWatch { since: now, reason });
    }

    pub(super) fn inconclusive(
        &mut self,
        reason: String,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) -> Request {
        // A drift under way is part of why: say it, whatever the last verdict was.
        let reason = match &self.state.drift {
            Some(d) if !reason.contains("drift") => {
                format!("{reason}; drift: {d} (on_drift: hold)")
            }
            _ => reason,
        };
        match self.plan.on_inconclusive {
            OnInconclusive::Hold => {
                let r = format!(
                    "{reason}; traffic held at {} (on_inconclusive: hold)",
                    self.weights_text()
                );
                self.finish(Phase::Held, r)
            }
            OnInconclusive::Rollback => self.begin_rollback(
                RollbackCause::Inconclusive,
                format!("{reason} (on_inconclusive: rollback)"),
                now,
                ev,
            ),
        }
    }
}
