//! Probes (`analysis.probe`): at a stage where DR serves nothing, a rise of the primary's
//! rate above DR's *earlier* rate is not evidence that the primary is worse — a cause common
//! to both sites (a shared dependency, a traffic peak) looks the same. Instead of rolling
//! back on it, the run writes an earlier stage's split (a weight the plan names) and judges
//! the primary there against DR's *concurrent* traffic for `probe` long. At a final
//! holdout's stage harm is already judged against DR's concurrent holdout, but through its
//! few requests; the same rise sets off a probe there too, where a regression is seen in
//! seconds rather than minutes:
//!
//! * harm against DR's concurrent traffic rolls back, as at any stage where DR serves (never
//!   the one-sample test alone: an interval without DR traffic is no evidence);
//! * no harm for the whole probe, and DR served at least
//!   [`PROBE_MIN_DR_BAD`] bad requests at it for each gate that set it off: the stage's
//!   split is written again; the no-worse evidence is put back as it was before the probe
//!   (the probe's split certifies nothing about the stage's); the one-sample test starts
//!   afresh, also allowing DR's rate at the probes when that is clearly above its earlier
//!   one ([`crate::judge::eprocess::EProcess::probe_cleared`]). With fewer bad requests at
//!   DR, the probe goes on;
//! * paused, or the live split drifted: the probe's split stays until that ends;
//! * past the stage's `max_duration`, the stage is held at the probe's split, watched for
//!   `watch_held` (harm still rolls back), then inconclusive: a rise that keeps coming back
//!   at 100 % while the primary is no worse at the probe's weight is a cause common to both
//!   sites or one seen only at full load, for a person to judge.
//!
//! Only the relative tests decide a rollback at such a stage, and their budget is spent
//! once per stage however many probes there are (one e-process, with data only while DR
//! serves). A run killed during a probe goes on with it when its split is live on restart,
//! the evidence continuing (no budget spent again) and, as at any restart, the stage's and
//! the probe's clocks starting over; if the write was lost, the stage goes on at its own
//! split; if a gate's test changed meanwhile, the live split's stage is judged afresh.
//! A probe that ends after the stage's `max_duration` (also one set off while a held stage
//! is watched) holds at its split rather than going back.

use std::time::{Duration, SystemTime};

use super::*;
use crate::judge::eprocess::PROBE_MIN_DR_BAD;
use crate::judge::gate::GateStatus;

impl Run {
    /// Whether this analysis's rollback is a rise above DR's earlier rate that a probe
    /// checks first: a stage where DR serves nothing by plan, a probe configured and none
    /// under way, and every failing gate a sequential one with evidence of harm (a fixed
    /// bound breached, or queries failing, still roll back as before).
    pub(super) fn probes_harm(
        &self,
        i: usize,
        verdict: &AnalysisVerdict,
        results: &[GateResult],
    ) -> bool {
        self.plan.probe.is_some()
            && self.state.probe.is_none()
            && self.plan.stages[i].weight == StageWeight::FULL
            && matches!(verdict, AnalysisVerdict::Harm { .. })
            && results
                .iter()
                .all(|r| r.status != GateStatus::Fail || r.decisive)
    }

    /// Whether this analysis at a final holdout's stage sets off a probe: a sequential gate
    /// is above DR's earlier rate but not (yet) above DR's concurrent holdout, no gate
    /// fails, and no probe is under way. The holdout's few requests would see a regression
    /// in minutes; the probe's split, in seconds.
    pub(super) fn probes_suspect(&self, i: usize, results: &[GateResult]) -> bool {
        self.plan.probe.is_some()
            && self.state.probe.is_none()
            && self.plan.is_holdout_stage(i)
            && results.iter().any(|r| r.suspect)
            && results.iter().all(|r| r.status != GateStatus::Fail)
    }

    /// Starts a probe at stage `i`: writes the probe's split (persisted as such first).
    pub(super) fn start_probe(
        &mut self,
        i: usize,
        reason: String,
        results: &[GateResult],
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) -> Request {
        let Some(plan) = self.plan.probe else {
            return self.unexpected(now, "a probe without analysis.probe", ev);
        };
        if self.state.dry_run {
            // Nothing is written: say what a run would do.
            return self.finish(
                Phase::Held,
                format!(
                    "a run would probe now, writing {} to judge the primary against DR's concurrent traffic for {} before any rollback (analysis.probe): {reason}",
                    Weights::at(plan.weight),
                    fmt_d(plan.duration)
                ),
            );
        }
        self.state.counters.probes += 1;
        for ep in self.state.evidence.values_mut() {
            ep.probe_started();
        }
        let weights = Weights::at(plan.weight);
        self.state.probe = Some(Probe {
            weights,
            since: None,
            reason: reason.clone(),
            gates: results
                .iter()
                .filter(|r| r.decisive || r.suspect)
                .map(|r| r.name.clone())
                .collect(),
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
        elapsed: Duration,
        now: SystemTime,
        push: &impl Fn(String, &mut Vec<Event>),
        ev: &mut Vec<Event>,
    ) -> Option<Request> {
        let since = self.state.probe.as_ref()?.since?;
        let plan = self.plan.probe?;
        let stage = self.plan.stages[i];
        let ran = now.duration_since(since).unwrap_or_default();
        let at = self.weights_text();
        if ran < plan.duration {
            let left = if now < since {
                format!(
                    "its clock starts in {}",
                    fmt_d(since.duration_since(now).unwrap_or_default())
                )
            } else {
                format!("{} left", fmt_d(plan.duration - ran))
            };
            push(
                format!("probing at {at}: no harm against DR's concurrent traffic so far ({left})"),
                ev,
            );
            return Some(Request::Sleep(stage.interval));
        }
        let waiting = self.state.paused.is_some() || self.state.awaiting.is_some();
        if elapsed >= stage.max_duration && !waiting {
            return Some(self.probe_held(i, ran, now, push, ev));
        }
        if let Some(why) = self.probe_stays(i) {
            push(format!("probe over at {at}; {why}"), ev);
            return Some(Request::Sleep(stage.interval));
        }
        let probe = self.state.probe.take()?;
        let detail = format!(
            "the primary was no worse than DR's concurrent traffic for {} at {} ({}); what set the probe off: {}",
            fmt_d(ran),
            probe.weights,
            self.probe_numbers(),
            probe.reason
        );
        for ep in self.state.evidence.values_mut() {
            ep.probe_cleared();
        }
        ev.push(Event {
            at: now,
            kind: EventKind::ProbeCleared { stage: i, detail },
        });
        push(
            format!(
                "probe cleared: no worse than DR's concurrent traffic; back to {}%",
                stage.weight
            ),
            ev,
        );
        Some(self.request_stage(i, now, ev))
    }

    /// Why a probe whose time is up keeps its split: paused, a drift, or too few bad
    /// requests at DR to say anything about its concurrent rate. `None`: it may clear.
    fn probe_stays(&self, i: usize) -> Option<String> {
        if let Some(p) = &self.state.paused {
            return Some(format!(
                "paused by {}: staying at the probe's split until `cutover resume`",
                p.by
            ));
        }
        if let Some(d) = &self.state.drift {
            return Some(format!(
                "drift ({d}): staying at the probe's split until the live split is the run's"
            ));
        }
        let probe = self.state.probe.as_ref()?;
        let short: Vec<String> = probe
            .gates
            .iter()
            .filter_map(|g| {
                let bad = self.state.evidence.get(g)?.probed_bad();
                (bad < PROBE_MIN_DR_BAD).then(|| format!("{g}: {bad}"))
            })
            .collect();
        (!short.is_empty()).then(|| {
            format!(
                "DR served too few bad requests at the probe to compare with ({}; {PROBE_MIN_DR_BAD} needed): probing on, until {} at most",
                short.join(", "),
                fmt_d(self.plan.stages[i].max_duration)
            )
        })
    }

    /// A probe over past the stage's `max_duration`: held at the probe's split, watched for
    /// `watch_held` (harm still rolls back), then inconclusive.
    fn probe_held(
        &mut self,
        i: usize,
        ran: Duration,
        now: SystemTime,
        push: &impl Fn(String, &mut Vec<Event>),
        ev: &mut Vec<Event>,
    ) -> Request {
        let stage = self.plan.stages[i];
        let reason = format!(
            "{} undecided after max_duration {}: {} probe(s) at {} found no harm against DR's concurrent traffic ({}) in the last {}; the rise above DR's earlier rate at {}% is a cause common to both sites or one seen only at full load; traffic stays at the probe's split",
            self.stage_label(i),
            fmt_d(stage.max_duration),
            self.state.counters.probes,
            self.weights_text(),
            self.probe_numbers(),
            fmt_d(ran),
            stage.weight
        );
        let watch = self.plan.watch_held;
        let watched = match &self.state.held {
            None if !watch.is_zero() => {
                let decision = format!(
                    "held at the probe's split {}; still judged for {} (analysis.watch_held): harm rolls back",
                    self.weights_text(),
                    fmt_d(watch)
                );
                self.begin_watch(i, reason.clone(), decision, now, push, ev);
                true
            }
            Some(h) if now.duration_since(h.since).unwrap_or_default() < watch => {
                push("held at the probe's split; watching for harm".into(), ev);
                true
            }
            _ => false,
        };
        if watched {
            return Request::Sleep(stage.interval);
        }
        push("inconclusive at the probe's split".into(), ev);
        let reason = match self.state.held.take() {
            Some(h) => format!(
                "{}; watched for {} more (analysis.watch_held): no harm seen",
                h.reason,
                fmt_d(watch)
            ),
            None => reason,
        };
        self.inconclusive(reason, now, ev)
    }

    /// A restart that finds the probe's split live, as recorded (its write confirmed, or
    /// pending and landed): the stage goes on in its probe, its evidence continuing where
    /// it stopped, so the restart spends no budget again; as at any restart, the stage's
    /// clock (bake, `max_duration`) and the probe's start over. `None` otherwise (the live
    /// split decides the stage, as for any restart), and also when a gate's test changed
    /// since: the probe's evidence is then not whole.
    pub(super) fn resume_probe(
        &mut self,
        live: Weights,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) -> Option<Request> {
        let i = self.state.stage?;
        let probe = self.state.probe.as_ref()?;
        if probe.weights != live || !matches!(self.state.phase, Phase::Settling | Phase::Judging) {
            return None;
        }
        let expected = self.evidence_of(i).tests.len();
        let (continued, evidence) = self.evidence_to_continue(i, live, now);
        if expected == 0 || continued.len() < expected {
            self.state.probe = None;
            return None;
        }
        if self.state.pending.take().is_some() {
            self.state.history.push(WeightChange {
                at: now,
                weights: live,
                stage: Some(i),
            });
        }
        let settle = self.propagation.max(self.plan.burn_in);
        self.state.stage_started = Some(now);
        self.state.held = None;
        self.state.rebake_from = None;
        if let Some(p) = self.state.probe.as_mut() {
            p.since = Some(now + settle);
        }
        self.state.evidence = continued;
        self.state.evidence_of = Some(self.evidence_of(i));
        ev.push(Event {
            at: now,
            kind: EventKind::Resumed {
                live,
                stage: Some(i),
                detail: format!(
                    "continuing {}'s probe at {live}, its clock and the stage's from now{evidence}",
                    self.stage_label(i)
                ),
            },
        });
        Some(Request::Sleep(self.plan.stages[i].interval.max(settle)))
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
