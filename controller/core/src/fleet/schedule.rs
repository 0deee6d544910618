//! The fleet's schedule: a pure state machine. It says which services start (dependencies
//! promoted, the layers below soaked, at most `max_parallel` at once), hears how each
//! ended (its cutover's exit code), stops or rolls the fleet back on a failure (in reverse
//! dependency order, one verified rollback at a time), and freezes on a global incident.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::load::FleetPlan;
use super::model::OnFailure;

/// Where a service of the fleet is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum SvcStatus {
    /// Not started: waiting for its dependencies, its layer, or a free slot.
    Waiting,
    /// Its cutover is running.
    Running {
        /// Since when.
        since: SystemTime,
    },
    /// Its cutover ended with this exit code (0 promoted, 1 rolled back, 3 preflight
    /// failed, 4 aborted, 5 held, 10 rollback not applied).
    Ended {
        /// The exit code.
        exit: i32,
        /// When.
        at: SystemTime,
        /// Why, in words.
        reason: String,
    },
    /// The fleet put its traffic back on DR (`rollback_fleet`, verified, or not: `ok`).
    RolledBack {
        /// Whether all traffic is verified on DR.
        ok: bool,
        /// When.
        at: SystemTime,
        /// What happened.
        detail: String,
    },
}

/// Where the fleet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetPhase {
    /// Starting services as they become ready.
    Running,
    /// A service failed (`on_failure: stop`) or an operator aborted: nothing new starts;
    /// cutovers under way finish.
    Stopping,
    /// Rolling back promoted services in reverse order (`rollback_fleet`).
    RollingBack,
    /// A global incident: nothing starts, nothing is rolled back by the fleet.
    Frozen,
    /// Over.
    Done,
}

/// The persisted state of a fleet run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// The fleet's name.
    pub fleet: String,
    /// This fleet run's id.
    pub run_id: String,
    /// When it started.
    pub started: SystemTime,
    /// The phase.
    pub phase: FleetPhase,
    /// Why it stopped, froze or rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Per service (in the plan's order): name and status.
    pub services: Vec<(String, SvcStatus)>,
    /// When each layer's last service was promoted.
    #[serde(default)]
    pub layer_done: Vec<(u32, SystemTime)>,
    /// How the fleet ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<FleetOutcome>,
    /// An operator asked to abort (`cutover fleet abort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<String>,
}

/// How a fleet run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetOutcome {
    /// The process exit code: 0 all promoted, 1 a service did not promote (the fleet
    /// stopped, or rolled back), 4 aborted by an operator, 5 frozen by a global incident,
    /// 10 a rollback (a service's or the fleet's) is not verified: page now.
    pub exit: i32,
    /// Why, in words.
    pub reason: String,
}

/// The wait the schedule asks for when only a service's end can change anything.
pub const IDLE: Duration = Duration::from_secs(60);

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetAction {
    /// Start this service's cutover (index into the plan).
    Start(usize),
    /// Abort this running service's cutover (operator abort of the fleet).
    Abort(usize),
    /// Put this service's traffic back on DR, verified (`cutover rollback`); report with
    /// [`Fleet::rolled_back`] before anything else happens.
    Rollback(usize),
    /// Nothing to do until a service ends or this long has passed.
    Wait(Duration),
    /// The fleet is over.
    Finish(FleetOutcome),
}

/// A fleet run.
#[derive(Debug, Clone)]
pub struct Fleet {
    plan: FleetPlan,
    state: FleetState,
}

impl Fleet {
    /// A new fleet run.
    pub fn new(plan: FleetPlan, run_id: String, now: SystemTime) -> Fleet {
        let state = FleetState {
            fleet: plan.spec.fleet.clone(),
            run_id,
            started: now,
            phase: FleetPhase::Running,
            reason: None,
            services: plan
                .services
                .iter()
                .map(|s| (s.name.clone(), SvcStatus::Waiting))
                .collect(),
            layer_done: Vec::new(),
            outcome: None,
            abort: None,
        };
        Fleet { plan, state }
    }

    /// A persisted fleet run continued (a restarted orchestrator). `None` if the state is
    /// not this plan's (other services): the caller says so.
    pub fn resume(plan: FleetPlan, state: FleetState) -> Option<Fleet> {
        let same = state.services.len() == plan.services.len()
            && state
                .services
                .iter()
                .zip(&plan.services)
                .all(|((n, _), s)| *n == s.name);
        same.then_some(Fleet { plan, state })
    }

    /// The state, for persisting and `fleet status`.
    pub fn state(&self) -> &FleetState {
        &self.state
    }

    /// The plan.
    pub fn plan(&self) -> &FleetPlan {
        &self.plan
    }

    fn status(&self, i: usize) -> &SvcStatus {
        &self.state.services[i].1
    }

    fn promoted(&self, i: usize) -> bool {
        matches!(self.status(i), SvcStatus::Ended { exit: 0, .. })
    }

    fn running(&self) -> usize {
        (0..self.plan.services.len())
            .filter(|&i| matches!(self.status(i), SvcStatus::Running { .. }))
            .count()
    }

    /// Whether service `i` may start now; else when to look again (a soak), if known.
    fn ready(&self, i: usize, now: SystemTime) -> Result<(), Option<Duration>> {
        let s = &self.plan.services[i];
        if !s.after.iter().all(|&j| self.promoted(j)) {
            return Err(None);
        }
        let mut wait = None;
        for (j, other) in self.plan.services.iter().enumerate() {
            if other.layer < s.layer && !self.promoted(j) {
                return Err(None);
            }
        }
        for l in self.plan.layers().into_iter().filter(|l| *l < s.layer) {
            let soak = self.plan.soak.get(&l).copied().unwrap_or_default();
            let done = self
                .state
                .layer_done
                .iter()
                .find(|(x, _)| *x == l)
                .map(|(_, t)| *t);
            match done {
                Some(t) => {
                    let left = soak.saturating_sub(now.duration_since(t).unwrap_or_default());
                    if !left.is_zero() {
                        wait = Some(wait.map_or(left, |w: Duration| w.max(left)));
                    }
                }
                None => return Err(None),
            }
        }
        match wait {
            Some(w) => Err(Some(w)),
            None => Ok(()),
        }
    }

    /// What to do now. `Start`s come together (up to the free slots); a `Rollback` alone.
    pub fn next(&mut self, now: SystemTime) -> Vec<FleetAction> {
        if let Some(o) = &self.state.outcome {
            return vec![FleetAction::Finish(o.clone())];
        }
        let n = self.plan.services.len();
        if let (Some(by), FleetPhase::Running | FleetPhase::Stopping) =
            (self.state.abort.clone(), self.state.phase)
        {
            self.state.phase = FleetPhase::Stopping;
            self.state.reason = Some(format!("aborted by {by}"));
            let running: Vec<FleetAction> = (0..n)
                .filter(|&i| matches!(self.status(i), SvcStatus::Running { .. }))
                .map(FleetAction::Abort)
                .collect();
            self.state.abort = None;
            if !running.is_empty() {
                return running;
            }
        }
        match self.state.phase {
            FleetPhase::Running => {
                let mut actions = Vec::new();
                let mut wait: Option<Duration> = None;
                let mut free =
                    (self.plan.spec.max_parallel as usize).saturating_sub(self.running());
                for i in 0..n {
                    if free == 0 {
                        break;
                    }
                    if *self.status(i) != SvcStatus::Waiting {
                        continue;
                    }
                    match self.ready(i, now) {
                        Ok(()) => {
                            self.state.services[i].1 = SvcStatus::Running { since: now };
                            actions.push(FleetAction::Start(i));
                            free -= 1;
                        }
                        Err(Some(w)) => wait = Some(wait.map_or(w, |x| x.min(w))),
                        Err(None) => {}
                    }
                }
                if !actions.is_empty() {
                    return actions;
                }
                if (0..n).all(|i| self.promoted(i)) {
                    return self.finish(0, format!("all {n} services promoted"));
                }
                // A soak's end, or nothing but a service ending: the driver looks again at
                // least every second anyway (and a planner jumps to the next end).
                vec![FleetAction::Wait(wait.unwrap_or(IDLE))]
            }
            FleetPhase::Stopping | FleetPhase::Frozen => {
                if self.running() > 0 {
                    return vec![FleetAction::Wait(Duration::from_secs(1))];
                }
                let (exit, what) = self.ended_summary();
                let reason = self.state.reason.clone().unwrap_or_default();
                let exit = if self.state.phase == FleetPhase::Frozen && exit != 10 {
                    5
                } else {
                    exit
                };
                self.finish(exit, format!("{reason}; {what}"))
            }
            FleetPhase::RollingBack => {
                if self.running() > 0 {
                    return vec![FleetAction::Wait(Duration::from_secs(1))];
                }
                // Reverse dependency order: the last in the plan's order first.
                let next = (0..n).rev().find(|&i| self.needs_rollback(i));
                match next {
                    Some(i) => vec![FleetAction::Rollback(i)],
                    None => {
                        let (exit, what) = self.ended_summary();
                        let reason = self.state.reason.clone().unwrap_or_default();
                        self.finish(
                            exit.max(1),
                            format!("{reason}; rolled back the fleet; {what}"),
                        )
                    }
                }
            }
            FleetPhase::Done => vec![FleetAction::Finish(self.state.outcome.clone().unwrap_or(
                FleetOutcome {
                    exit: 10,
                    reason: "over without an outcome".into(),
                },
            ))],
        }
    }

    /// Whether the fleet must still put service `i` back on DR: it changed traffic and it
    /// is not known to be all on DR (promoted, held; an abort or a page leaves it unsure).
    fn needs_rollback(&self, i: usize) -> bool {
        match self.status(i) {
            // 1: rolled back itself (verified); 2 and 3: nothing was changed. Anything else
            // (promoted, aborted, held, a page, killed by a signal) may have traffic on it.
            SvcStatus::Ended { exit, .. } => !matches!(exit, 1..=3),
            _ => false,
        }
    }

    fn ended_summary(&self) -> (i32, String) {
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        let mut page = false;
        let mut failed = false;
        for (_, s) in &self.state.services {
            let k = match s {
                SvcStatus::Waiting => "not started",
                SvcStatus::Running { .. } => "running",
                SvcStatus::Ended { exit: 0, .. } => "promoted",
                SvcStatus::Ended { exit: 10, .. } => {
                    page = true;
                    "ROLLBACK NOT APPLIED"
                }
                SvcStatus::Ended { exit: 4, .. } => {
                    failed = true;
                    "aborted"
                }
                SvcStatus::Ended { exit: 5, .. } => {
                    failed = true;
                    "held"
                }
                SvcStatus::Ended { exit: 3, .. } => {
                    failed = true;
                    "preflight failed"
                }
                SvcStatus::Ended { exit: 2, .. } => {
                    failed = true;
                    "refused to start"
                }
                SvcStatus::Ended { exit: 1, .. } => {
                    failed = true;
                    "rolled back"
                }
                SvcStatus::Ended { .. } => {
                    failed = true;
                    "ended unexpectedly (traffic unknown)"
                }
                SvcStatus::RolledBack { ok: true, .. } => "rolled back by the fleet",
                SvcStatus::RolledBack { ok: false, .. } => {
                    page = true;
                    "FLEET ROLLBACK NOT VERIFIED"
                }
            };
            *counts.entry(k).or_default() += 1;
        }
        let what = counts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let exit = if page {
            10
        } else if self
            .state
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("aborted by"))
        {
            4
        } else if failed {
            1
        } else {
            0
        };
        (exit, what)
    }

    fn finish(&mut self, exit: i32, reason: String) -> Vec<FleetAction> {
        let o = FleetOutcome { exit, reason };
        self.state.phase = FleetPhase::Done;
        self.state.outcome = Some(o.clone());
        vec![FleetAction::Finish(o)]
    }

    /// Service `i`'s cutover ended with `exit`.
    pub fn ended(&mut self, i: usize, exit: i32, reason: String, now: SystemTime) {
        self.state.services[i].1 = SvcStatus::Ended {
            exit,
            at: now,
            reason: reason.clone(),
        };
        let name = self.plan.services[i].name.clone();
        if exit == 0 {
            let layer = self.plan.services[i].layer;
            let layer_done = self
                .plan
                .services
                .iter()
                .enumerate()
                .filter(|(_, s)| s.layer == layer)
                .all(|(j, _)| self.promoted(j));
            if layer_done {
                self.state.layer_done.push((layer, now));
            }
            return;
        }
        if exit == 10 {
            // A page: stop everything; the fleet does not write over a failed rollback.
            self.state.phase = FleetPhase::Stopping;
            self.state.reason = Some(format!("`{name}` could not roll back (exit 10): page now"));
            return;
        }
        // Several failures close together: a common cause, not several broken primaries.
        let gi = self.plan.spec.global_incident;
        let recent = self
            .state
            .services
            .iter()
            .filter(|(_, s)| match s {
                SvcStatus::Ended { exit, at, .. } if *exit != 0 => {
                    now.duration_since(*at).unwrap_or_default() <= gi.within.get()
                }
                _ => false,
            })
            .count();
        if recent as u32 >= gi.failures {
            self.state.phase = FleetPhase::Frozen;
            self.state.reason = Some(format!(
                "global incident: {recent} services failed within {} (the last `{name}`, exit {exit}); the fleet is frozen: nothing more starts and nothing is rolled back by the fleet",
                humantime::format_duration(gi.within.get())
            ));
            return;
        }
        if self.state.phase != FleetPhase::Running {
            return;
        }
        let why = format!("`{name}` did not promote (exit {exit}: {reason})");
        match self.plan.spec.on_failure {
            OnFailure::Stop => {
                self.state.phase = FleetPhase::Stopping;
                self.state.reason = Some(format!("{why}; nothing more starts (on_failure: stop)"));
            }
            OnFailure::RollbackFleet => {
                self.state.phase = FleetPhase::RollingBack;
                self.state.reason = Some(format!("{why} (on_failure: rollback_fleet)"));
            }
        }
    }

    /// The fleet's rollback of service `i` is done (`ok`: all traffic verified on DR).
    pub fn rolled_back(&mut self, i: usize, ok: bool, detail: String, now: SystemTime) {
        self.state.services[i].1 = SvcStatus::RolledBack {
            ok,
            at: now,
            detail,
        };
        if !ok {
            // Stop rolling back the rest over an unverified one? No: each service is its
            // own object; keep going, and page at the end.
        }
    }

    /// An operator asked to abort the fleet.
    pub fn abort(&mut self, by: String) {
        if self.state.outcome.is_none() {
            self.state.abort = Some(by);
        }
    }
}

#[cfg(test)]
mod tests;
