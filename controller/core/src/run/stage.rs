//! Moving through the stages: start, preflight, each stage's write and its read-back,
//! failed writes and their retries, settling until the observed share matches the weight.

use std::time::{Duration, SystemTime};

use super::*;

impl Run {
    pub(super) fn on_started(
        &mut self,
        now: SystemTime,
        live: Result<Weights, String>,
        ev: &mut Vec<Event>,
    ) -> Request {
        self.state.started = Some(now);
        if self.state.phase != Phase::Preflight {
            return self.unexpected(now, "a second start", ev);
        }
        let live = match live {
            Ok(w) => w,
            Err(e) => {
                let reason = format!("cannot read the live weights: {e}");
                return self.preflight_failed(reason, now, ev);
            }
        };
        self.state.weights = Some(live);
        self.state.last_live = Some(live);
        ev.push(Event {
            at: now,
            kind: EventKind::RunStarted {
                live,
                stages: self.plan.stages.iter().map(|s| s.weight.get()).collect(),
            },
        });
        if self.state.dry_run {
            return self.dry_start(live, now, ev);
        }
        if live != Weights::ALL_DR {
            let reason = format!(
                "the backend sends {live}, but a cutover starts with all traffic on DR; \
                 if an earlier run was held there, `cutover resume` continues it; \
                 if it stopped half-way otherwise, run `cutover rollback` first"
            );
            return self.preflight_failed(reason, now, ev);
        }
        Request::Preflight
    }

    pub(super) fn on_preflight(
        &mut self,
        now: SystemTime,
        results: Vec<PreflightResult>,
        ev: &mut Vec<Event>,
    ) -> Request {
        if self.state.phase != Phase::Preflight {
            return self.unexpected(now, "preflight results", ev);
        }
        if let Some(request) = self.preflight_readiness(now, &results, ev) {
            return request;
        }
        let failed: Vec<String> = results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("{}: {} (query: {})", r.name, r.detail, r.query))
            .collect();
        if !failed.is_empty() {
            let reason = format!("preflight failed, nothing changed: {}", failed.join("; "));
            return self.preflight_failed(reason, now, ev);
        }
        ev.push(Event {
            at: now,
            kind: EventKind::PreflightPassed { results },
        });
        if self.state.dry_run
            && let Some(i) = self.state.stage
        {
            // A dry run judges the stage live now, as if its weight had just been confirmed.
            return self.start_stage(i, now);
        }
        self.advance_to(0, now, ev)
    }

    /// A dry run judges the stage whose weight is live; at 0 % or at a weight the plan does
    /// not name there is nothing a run would judge.
    fn dry_start(&mut self, live: Weights, now: SystemTime, ev: &mut Vec<Event>) -> Request {
        let at = self
            .plan
            .stages
            .iter()
            .position(|s| s.judged && s.weight.get() == live.primary());
        match at {
            Some(i) => {
                self.state.stage = Some(i);
                Request::Preflight
            }
            None => {
                let reason = if live.primary() == 0 {
                    format!(
                        "the backend sends {live}: the primary serves nothing, so there is nothing to judge; \
                         a run would run preflight and write {} first",
                        self.stage_label(0)
                    )
                } else {
                    format!(
                        "the backend sends {live}, a weight no judged stage of the plan names; nothing to judge"
                    )
                };
                self.preflight_failed(reason, now, ev)
            }
        }
    }

    /// Records the intent to write `weights` (persisted before the write happens).
    pub(super) fn pend_write(
        &mut self,
        weights: Weights,
        stage: Option<usize>,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) {
        self.state.pending = Some(PendingWrite {
            weights,
            stage,
            attempts: 0,
            probe: false,
        });
        ev.push(Event {
            at: now,
            kind: EventKind::WeightRequested { weights, stage },
        });
    }

    pub(super) fn request_stage(
        &mut self,
        i: usize,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) -> Request {
        let weights = Weights::at(self.plan.stages[i].weight);
        self.pend_write(weights, Some(i), now, ev);
        Request::SetWeights(weights)
    }

    /// Writes the split stage `i` is judged at now: a probe's while one is under way
    /// (`analysis.probe`), else the stage's own (a drift's `reassert`).
    pub(super) fn request_current(
        &mut self,
        i: usize,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) -> Request {
        let Some(weights) = self.state.probe.as_ref().map(|p| p.weights) else {
            return self.request_stage(i, now, ev);
        };
        self.pend_write(weights, Some(i), now, ev);
        if let Some(p) = self.state.pending.as_mut() {
            p.probe = true;
        }
        Request::SetWeights(weights)
    }

    pub(super) fn on_weights_set(
        &mut self,
        now: SystemTime,
        weights: Weights,
        ev: &mut Vec<Event>,
    ) -> Request {
        let Some(pending) = self.state.pending.take() else {
            return self.unexpected(now, "a weight confirmation with no write pending", ev);
        };
        if weights != pending.weights {
            // The driver reads back and reports mismatches as failures; keep it that way.
            self.state.pending = Some(pending);
            return self.on_write_failed(
                now,
                format!("read back {weights} after a write of a different split"),
                true,
                Some(Ok(weights)),
                ev,
            );
        }
        self.state.weights = Some(weights);
        // What is live now, for a stepped rollback that steps down from it.
        self.state.last_live = Some(weights);
        self.state.history.push(WeightChange {
            at: now,
            weights,
            stage: pending.stage,
        });
        ev.push(Event {
            at: now,
            kind: EventKind::WeightConfirmed {
                weights,
                stage: pending.stage,
            },
        });
        if self.state.phase == Phase::RollingBack {
            return self.rollback_step_done(now, ev);
        }
        if pending.probe {
            // The probe's split is live: its clock starts once the split has propagated and
            // burnt in (a write again after a drift keeps the probe's clock). Meanwhile its
            // intervals count, judged against DR's concurrent traffic.
            let settle = self.propagation.max(self.plan.burn_in);
            if let Some(p) = self.state.probe.as_mut() {
                p.since.get_or_insert(now + settle);
            }
            let i = self.state.stage.unwrap_or_default();
            return Request::Sleep(self.plan.stages[i].interval.max(settle));
        }
        let Some(i) = pending.stage else {
            return self.unexpected(now, "a rollback weight outside a rollback", ev);
        };
        if self.state.stage == Some(i)
            && matches!(self.state.phase, Phase::Settling | Phase::Judging)
        {
            // The current stage written again after a drift (`reassert`): its bake starts
            // over, its max_duration does not, so a weight reverted again and again ends
            // as inconclusive instead of re-baking forever.
            self.state.rebake_from = Some(now);
            self.state.counters.consecutive_passes = 0;
            return Request::Sleep(self.plan.stages[i].interval);
        }
        self.start_stage(i, now)
    }

    /// Stage `i` (re)starts at `now`: counters and evidence start from nothing, and sequential
    /// gates count from the end of the burn-in (the split they condition on is measured, so
    /// the settling period's data is valid evidence). Settling's first look comes after an
    /// interval, the propagation delay and the burn-in, whichever is longest. (A restart that
    /// resumes the same stage at the same weight then puts its persisted evidence back:
    /// `resume.rs`.)
    pub(super) fn start_stage(&mut self, i: usize, now: SystemTime) -> Request {
        if !self.plan.stages[i].judged {
            // The 100 % that ends a final holdout: written and read back, nothing to judge.
            self.state.stage = Some(i);
            self.state.stage_started = Some(now);
            let judged_at = i.checked_sub(1).map(|j| self.plan.stages[j].weight);
            return self.finish(
                Phase::Promoted,
                format!(
                    "all {} stages passed, the last judged at {}% against DR's holdout; the primary serves 100% of traffic",
                    self.plan.stages.len(),
                    judged_at.map(|w| w.get()).unwrap_or(100)
                ),
            );
        }
        self.state.stage = Some(i);
        self.state.stage_started = Some(now);
        // A promote is for the stage it was taken at.
        if self
            .state
            .promote
            .as_ref()
            .is_some_and(|p| p.stage != Some(i))
        {
            self.state.promote = None;
        }
        self.state.drift = None;
        self.state.unreadable = 0;
        self.state.rebake_from = None;
        self.state.judging_started = None;
        self.state.counters = StageCounters::default();
        self.state.phase = Phase::Settling;
        self.state.held = None;
        self.state.probe = None;
        let previous = std::mem::take(&mut self.state.evidence);
        // DR's counts at every stage it served, pooled: the reference (with its uncertainty)
        // of a stage where DR serves nothing.
        for (name, ep) in &previous {
            let pooled = self.state.dr_pooled.entry(name.clone()).or_default();
            pooled.total += ep.dr.total;
            pooled.bad += ep.dr.bad;
        }
        let dr_serves = self.plan.stages[i].weight < StageWeight::FULL;
        // A final holdout's stage (the unjudged 100 % follows): DR's pooled earlier counts
        // are its no-worse side's reference too.
        let holdout = self.plan.is_holdout_stage(i);
        let cumulative = self.plan.certify == crate::policy::model::Certify::Cumulative;
        self.state.evidence = self
            .plan
            .gates
            .iter()
            .filter(|g| g.is_sequential())
            .map(|g| {
                let st = &self.plan.stages[i];
                let mut ep = EProcess {
                    counted_to: Some(now + self.plan.burn_in),
                    looks: looks(st.max_duration, st.interval),
                    ..EProcess::default()
                };
                if !dr_serves || holdout {
                    ep.reference = self.state.dr_pooled.get(&g.name).copied();
                }
                // `certify: cumulative`: "no worse" carries over; harm starts afresh.
                if let Some(before) = previous.get(&g.name).filter(|_| cumulative) {
                    ep.ok.clone_from(&before.ok);
                    // Where the stage is judged like the one before, the same shares of
                    // `β`; where DR serves nothing or only a holdout, the carried relative
                    // evidence and the comparison with DR's pooled stages get half each
                    // (chosen from the plan, before the stage's data).
                    ep.ok_share = if dr_serves && !holdout {
                        before.ok_share
                    } else {
                        Some(crate::judge::eprocess::CUMULATIVE_SCARCE_DR_OK_SHARE)
                    };
                    if g.sequential_test()
                        .is_some_and(|t| ep.tests_absolute_against_tolerance(&t))
                    {
                        ep.abs_ok.clone_from(&before.abs_ok);
                    }
                }
                (g.name.clone(), ep)
            })
            .collect();
        self.state.evidence_of = Some(self.evidence_of(i));
        Request::Sleep(
            self.plan.stages[i]
                .interval
                .max(self.propagation)
                .max(self.plan.burn_in),
        )
    }

    /// What stage `i`'s evidence is about under this plan: its weight and each sequential
    /// gate's test.
    pub(super) fn evidence_of(&self, i: usize) -> EvidenceOf {
        EvidenceOf {
            stage: i,
            weight: self.plan.stages[i].weight.get(),
            tests: self
                .plan
                .gates
                .iter()
                .filter_map(|g| match g.kind {
                    GateKind::Sequential { counted, test } => Some((
                        g.name.clone(),
                        EvidenceTest {
                            counted,
                            ratio: test.test().ratio,
                            absolute: test.absolute,
                            model: EVIDENCE_MODEL,
                        },
                    )),
                    GateKind::Bounds { .. } => None,
                })
                .collect(),
        }
    }

    pub(super) fn on_write_failed(
        &mut self,
        now: SystemTime,
        error: String,
        retryable: bool,
        live: Option<Result<Weights, String>>,
        ev: &mut Vec<Event>,
    ) -> Request {
        let Some(pending) = self.state.pending.as_mut() else {
            return self.unexpected(now, "a write failure with no write pending", ev);
        };
        pending.attempts += 1;
        let attempts = pending.attempts;
        ev.push(Event {
            at: now,
            kind: EventKind::WriteFailed {
                error: error.clone(),
                attempts,
            },
        });
        let wait = self.retry_wait(attempts);
        if self.state.phase == Phase::RollingBack {
            let wanted = self.state.pending.as_ref().map(|p| p.weights);
            if let (Some(Ok(w)), Some(want)) = (&live, wanted)
                && *w == want
            {
                // The write failed, but the live split read back is the one asked for.
                return self.on_weights_set(now, *w, ev);
            }
            if let Some(Ok(w)) = &live
                && *w == Weights::ALL_DR
            {
                // A step failed, but everything is on DR already: the rollback is done.
                if let Some(rb) = self.state.rollback.as_mut() {
                    rb.remaining = vec![0];
                }
                if let Some(p) = self.state.pending.as_mut() {
                    p.weights = Weights::ALL_DR;
                }
                return self.on_weights_set(now, *w, ev);
            }
            // A rollback is retried whatever the error, until it sticks or attempts run out.
            if attempts >= self.plan.rollback.max_attempts {
                let read = match &live {
                    Some(Ok(w)) => {
                        format!("the live weights read {w}: traffic still reaches the primary")
                    }
                    Some(Err(e)) => format!(
                        "the live weights cannot be read ({e}): traffic may still reach the primary"
                    ),
                    None => {
                        "the live weights were not read: traffic may still reach the primary".into()
                    }
                };
                return self.finish(
                    Phase::RollbackFailed,
                    format!(
                        "ROLLBACK COULD NOT BE APPLIED after {attempts} attempts; {read}. Last error: {error}"
                    ),
                );
            }
            return Request::Sleep(wait);
        }
        if retryable && attempts < FORWARD_WRITE_ATTEMPTS {
            return Request::Sleep(wait);
        }
        let what = if self.state.pending.as_ref().is_some_and(|p| p.probe) {
            "the probe's weights (analysis.probe)"
        } else {
            "the next stage's weights"
        };
        let reason = format!("could not write {what} after {attempts} attempts: {error}");
        self.begin_rollback(RollbackCause::WriteFailed, reason, now, ev)
    }

    pub(super) fn retry_wait(&self, attempts: u32) -> Duration {
        retry_backoff(self.plan.rollback.retry_interval.get(), attempts)
    }

    pub(super) fn on_slept(&mut self, now: SystemTime, ev: &mut Vec<Event>) -> Request {
        if let Some(p) = &self.state.pending {
            return Request::SetWeights(p.weights);
        }
        if let Some(r) = self.awaiting_request(now) {
            return r;
        }
        self.next_look(now, ev)
    }

    /// The next analysis of the current stage.
    pub(super) fn next_look(&mut self, now: SystemTime, ev: &mut Vec<Event>) -> Request {
        match (self.state.phase, self.state.stage) {
            (Phase::Settling | Phase::Judging, Some(i)) => Request::Analyze {
                interval: self.plan.stages[i].interval,
                since: self
                    .state
                    .evidence
                    .iter()
                    .filter_map(|(name, ep)| Some((name.clone(), ep.counted_to?)))
                    .collect(),
            },
            // A preflight check is being waited for (`wait:`): check again.
            (Phase::Preflight, None) => Request::Preflight,
            _ => self.unexpected(now, "the end of a sleep", ev),
        }
    }
}

/// The intervals a stage's `max_duration` holds: its change detector's first epoch.
pub(super) fn looks(max_duration: Duration, interval: Duration) -> u32 {
    (max_duration.as_secs_f64() / interval.as_secs_f64().max(1.0))
        .ceil()
        .clamp(1.0, 1e6) as u32
}
