//! Probes (`analysis.probe`): at a stage where DR serves nothing, a rise of the primary's
//! rate above DR's *earlier* rate is not evidence that the primary is worse — a cause common
//! to both sites (a shared dependency, a traffic peak) looks the same. Instead of rolling
//! back on it, the run writes an earlier stage's split (a weight the plan names) and judges
//! the primary there against DR's *concurrent* traffic for `probe` long:
//!
//! * harm against DR's concurrent traffic rolls back, as at any stage where DR serves;
//! * no harm for the whole probe: the stage's split is written again, and the one-sample
//!   test that set the probe off starts afresh against the larger of DR's earlier rate and
//!   its rate over the probes ([`crate::judge::eprocess::EProcess::probe_cleared`]);
//! * a probe that ends after the stage's `max_duration` ends the stage inconclusive at the
//!   probe's split: a rise that keeps coming back at 100 % while the primary is no worse
//!   at the probe's weight is a common cause or one seen only at full load, for a person
//!   to judge.
//!
//! Only the relative tests decide a rollback at such a stage, and their budget is spent
//! once per stage however many probes there are (one e-process, with data only while DR
//! serves). A run killed during a probe resumes at the stage whose weight is live.

use std::time::SystemTime;

use super::*;

impl Run {
    /// Whether this analysis's rollback is a rise above DR's earlier rate that a probe
    /// checks first: a stage where DR serves nothing by plan, a probe configured and none
    /// under way, and only sequential gates' evidence of harm (a fixed bound breached, or
    /// queries failing, still roll back at once).
    pub(super) fn probes_harm(&self, i: usize, verdict: &AnalysisVerdict) -> bool {
        self.plan.probe.is_some()
            && !self.state.dry_run
            && self.state.probe.is_none()
            && self.plan.stages[i].weight == StageWeight::FULL
            && matches!(verdict, AnalysisVerdict::Harm { .. })
    }

    /// Starts a probe at stage `i`: writes the probe's split (persisted as such first).
    pub(super) fn start_probe(
        &mut self,
        i: usize,
        reason: String,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) -> Request {
        let Some(plan) = self.plan.probe else {
            return self.unexpected(now, "a probe without analysis.probe", ev);
        };
        // Harm counted a failure; a probe is not one (its verdict is the probe's).
        self.state.counters.failures = self.state.counters.failures.saturating_sub(1);
        self.state.counters.probes += 1;
        let weights = Weights::at(plan.weight);
        self.state.probe = Some(Probe {
            weights,
            since: None,
            reason: reason.clone(),
        });
        ev.push(Event {
            at: now,
            kind: EventKind::ProbeStarted {
                stage: i,
                weights,
                reason,
            },
        });
        self.request_current(i, now, ev)
    }

    /// An analysis during a confirmed probe that found no harm (harm was acted on before):
    /// `Some(request)` while the probe goes on or when it ends; `None` if no probe is under
    /// way.
    pub(super) fn during_probe(
        &mut self,
        i: usize,
        elapsed: std::time::Duration,
        now: SystemTime,
        push: &impl Fn(String, &mut Vec<Event>),
        ev: &mut Vec<Event>,
    ) -> Option<Request> {
        let since = self.state.probe.as_ref()?.since?;
        let plan = self.plan.probe?;
        let stage = self.plan.stages[i];
        let ran = now.duration_since(since).unwrap_or_default();
        if ran < plan.duration {
            push(
                format!(
                    "probing at {}: no harm against DR's concurrent traffic so far ({} left)",
                    self.weights_text(),
                    fmt_d(plan.duration - ran)
                ),
                ev,
            );
            return Some(Request::Sleep(stage.interval));
        }
        let probe = self.state.probe.take()?;
        let seen = self.probe_numbers();
        let detail = format!(
            "the primary was no worse than DR's concurrent traffic for {} at {} ({seen}); what set the probe off: {}",
            fmt_d(ran),
            probe.weights,
            probe.reason
        );
        for ep in self.state.evidence.values_mut() {
            ep.probe_cleared();
        }
        ev.push(Event {
            at: now,
            kind: EventKind::ProbeCleared {
                stage: i,
                detail: detail.clone(),
            },
        });
        let waiting = self.state.paused.is_some() || self.state.awaiting.is_some();
        if elapsed >= stage.max_duration && !waiting {
            push("probe cleared past max_duration; inconclusive".into(), ev);
            let reason = format!(
                "{} undecided after max_duration {}: probe {} found no harm ({detail}); the rise above DR's earlier rate at {}% is a cause common to both sites or one seen only at full load; traffic stays at the probe's split",
                self.stage_label(i),
                fmt_d(stage.max_duration),
                self.state.counters.probes,
                stage.weight
            );
            return Some(self.inconclusive(reason, now, ev));
        }
        push(
            format!(
                "probe cleared: no worse than DR's concurrent traffic; back to {}%",
                stage.weight
            ),
            ev,
        );
        Some(self.request_stage(i, now, ev))
    }

    /// Each sequential gate's rates at the stage so far, in words.
    fn probe_numbers(&self) -> String {
        self.state
            .evidence
            .iter()
            .map(|(name, ep)| {
                let rate = |t: crate::judge::eprocess::Tally| {
                    t.rate()
                        .map(|r| format!("{:.3}%", r * 100.0))
                        .unwrap_or_else(|| "none".into())
                };
                format!(
                    "{name}: primary {} vs DR {} this stage",
                    rate(ep.primary),
                    rate(ep.dr)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}
