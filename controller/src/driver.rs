//! The driver: performs what the pure [`Run`] asks for — preflight, weight writes with
//! read-back, sleeps, analyses — and feeds the results back, persisting the state and
//! telling observers after every step.

use std::sync::Arc;

use cutover_analyzers::Analyzer;
use cutover_analyzers::preflight::run_preflight;
use cutover_core::judge::preflight::PreflightCheck;
use cutover_core::{BackendError, TrafficBackend, Weights};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::lock::{Ownership, Stop};
use crate::observe::Observer;
use cutover_core::run::{Command, Observation, Outcome, Request, Run};
use cutover_core::store::StateStore;

/// A receiver of termination signals: holds the signal's name once one arrived.
pub type Shutdown = watch::Receiver<Option<String>>;

/// Everything a run needs from the outside world.
pub struct Driver {
    /// Where the split is written.
    pub backend: Arc<dyn TrafficBackend>,
    /// Takes analyses.
    pub analyzer: Analyzer,
    /// The policy's preflight checks.
    pub preflight: Vec<PreflightCheck>,
    /// Now and waiting.
    pub clock: Arc<dyn Clock>,
    /// Where the run state is persisted, if anywhere.
    pub store: Option<Box<dyn StateStore>>,
    /// Who hears about events.
    pub observers: Vec<Arc<dyn Observer>>,
    /// Termination signals.
    pub shutdown: Shutdown,
    /// The lock of the traffic object, re-read before every write and at every analysis;
    /// `None` in simulations only.
    pub owner: Option<Arc<Ownership>>,
}

/// What a check of the lock tells the run, if anything.
fn stop_observation(stop: Stop, now: std::time::SystemTime) -> Observation {
    match stop {
        Stop::Braked(b) => Observation::Braked {
            now,
            by: format!("{} at {}", b.by, cutover_core::lock::rfc3339(b.at)),
        },
        Stop::Lost { detail, .. } => Observation::LockLost { now, detail },
    }
}

impl Driver {
    /// Drives `run` to its end and returns the outcome.
    pub async fn drive(&mut self, run: &mut Run) -> Outcome {
        // A run that cannot record its intent must not change traffic: check the store first.
        if let Some(store) = &self.store
            && let Err(e) = store.save(run.state()).await
        {
            return Outcome {
                phase: cutover_core::run::Phase::PreflightFailed,
                reason: format!("cannot record the run state: {e}; nothing was changed"),
            };
        }
        // The live split first: reading it is how a backend learns its propagation delay
        // (Route 53 reads the records' TTL).
        let live = self.backend.get_weights().await.map_err(|e| e.to_string());
        let mut obs = Observation::Started {
            now: self.clock.now(),
            live,
            propagation: self.backend.propagation_delay(),
        };
        // A stop found right after a forward write, told to the run as its next observation.
        let mut stop_next: Option<Stop> = None;
        // Operator commands found after a sleep, told one per step.
        let mut commands_next: std::collections::VecDeque<Command> = Default::default();
        loop {
            let told = match &obs {
                Observation::Command { command, .. } => Some(command.id.clone()),
                _ => None,
            };
            let step = run.step(obs);
            // Persisted before the request is carried out: a write's intent is on disk first.
            let saved = match &self.store {
                Some(store) => store.save(run.state()).await.map_err(|e| {
                    tracing::error!(error = %e, "cannot persist the run state");
                    e
                }),
                None => Ok(()),
            };
            for e in &step.events {
                for o in &self.observers {
                    o.event(e, run.state());
                }
            }
            // Acknowledged in the saved record: the command can go from the mailbox.
            if let (Some(id), Some(store), Ok(())) = (told, &self.store, &saved)
                && let Err(e) = store.forget_commands(&[id]).await
            {
                tracing::warn!(error = %e, "cannot remove an acknowledged command; it is not applied twice");
            }
            if let Some(command) = commands_next.pop_front()
                && !matches!(step.request, Request::Finish(_))
            {
                obs = Observation::Command {
                    now: self.clock.now(),
                    command,
                };
                continue;
            }
            if let Some(stop) = stop_next.take()
                && !matches!(step.request, Request::Finish(_))
            {
                obs = stop_observation(stop, self.clock.now());
                continue;
            }
            let forward = run
                .state()
                .pending
                .as_ref()
                .is_some_and(|p| p.stage.is_some());
            let check = match (&self.owner, &step.request) {
                (
                    Some(owner),
                    Request::Preflight | Request::SetWeights(_) | Request::Analyze { .. },
                ) => Some(owner.check().await),
                _ => None,
            };
            match (&check, &step.request) {
                // Lost to another run: never write again, not even a rollback (the object is
                // someone else's). Released by someone else: a rollback write still goes
                // ahead (0 % is where every run starts), nothing else does.
                (Some(Ok(Some(stop @ Stop::Lost { held, .. }))), r)
                    if *held || forward || !matches!(r, Request::SetWeights(_)) =>
                {
                    obs = stop_observation(stop.clone(), self.clock.now());
                    continue;
                }
                // Braked: the run hears of it before anything else, even a step of a stepped
                // rollback (whose next weight may be above the operator's 0 %); once it rolls
                // back for the operator, its writes (0 % only) go ahead.
                (Some(Ok(Some(stop @ Stop::Braked(_)))), _)
                    if run.state().rollback.as_ref().map(|r| r.cause)
                        != Some(cutover_core::run::RollbackCause::Operator) =>
                {
                    obs = stop_observation(stop.clone(), self.clock.now());
                    continue;
                }
                _ => {}
            }
            obs = match step.request {
                Request::Finish(outcome) => return outcome,
                Request::SetWeights(w) if forward && matches!(check, Some(Err(_))) => {
                    // Ownership not confirmed: never a licence to write forward.
                    Observation::WeightsFailed {
                        now: self.clock.now(),
                        error: format!(
                            "not writing {w}: {}",
                            check
                                .and_then(Result::err)
                                .map(|e| e.to_string())
                                .unwrap_or_default()
                        ),
                        retryable: true,
                        live: None,
                    }
                }
                Request::Preflight => {
                    let gates = self.analyzer.gates().to_vec();
                    let interval = run
                        .plan()
                        .stages
                        .first()
                        .map(|s| s.interval)
                        .unwrap_or_default();
                    let mut results = run_preflight(
                        self.analyzer.source().as_ref(),
                        &self.preflight,
                        &gates,
                        interval,
                        self.clock.now(),
                    )
                    .await;
                    // Guards hold before the first write too (capacity for its weight).
                    results.extend(crate::readiness::guards_before_start(self, run).await);
                    Observation::PreflightDone {
                        now: self.clock.now(),
                        results,
                    }
                }
                Request::SetWeights(w)
                    if saved.is_err()
                        && run
                            .state()
                            .pending
                            .as_ref()
                            .is_some_and(|p| p.stage.is_some()) =>
                {
                    // Never advance without the intent recorded; a rollback goes ahead anyway.
                    Observation::WeightsFailed {
                        now: self.clock.now(),
                        error: format!(
                            "not writing {w}: the intent could not be recorded ({})",
                            saved.err().map(|e| e.to_string()).unwrap_or_default()
                        ),
                        retryable: false,
                        live: None,
                    }
                }
                Request::SetWeights(w) => {
                    let st = run.state();
                    let what = match st.pending.as_ref().and_then(|p| p.stage) {
                        Some(i) => format!("stage {}/{}", i + 1, run.plan().stages.len()),
                        None => "rollback".to_string(),
                    };
                    let note = format!("run {} {what}", st.run_id);
                    match write_or_read_live(self.backend.as_ref(), w, &note).await {
                        Ok(weights) => {
                            // A brake pulled while this forward write was in flight: the
                            // run hears of it next, and puts traffic back on DR itself.
                            if forward
                                && let Some(owner) = &self.owner
                                && let Ok(Some(stop)) = owner.check().await
                            {
                                stop_next = Some(stop);
                            }
                            Observation::WeightsSet {
                                now: self.clock.now(),
                                weights,
                            }
                        }
                        Err(f) => Observation::WeightsFailed {
                            now: self.clock.now(),
                            retryable: f.error.is_retryable(),
                            error: f.error.to_string(),
                            live: Some(f.live),
                        },
                    }
                }
                Request::Sleep(d) => {
                    let clock = self.clock.clone();
                    let slept = tokio::select! {
                        _ = clock.sleep(d) => Observation::Slept { now: self.clock.now() },
                        s = wait_signal(&mut self.shutdown) => Observation::Interrupted { now: self.clock.now(), signal: s },
                    };
                    commands_next.extend(self.new_commands(run).await);
                    match (slept, commands_next.pop_front()) {
                        (Observation::Slept { now }, Some(command)) => {
                            Observation::Command { now, command }
                        }
                        (other, _) => other,
                    }
                }
                Request::AskApproval { stage, url } => {
                    let (granted, detail) = ask_approval(&url, run.state()).await;
                    Observation::ApprovalAnswered {
                        now: self.clock.now(),
                        stage,
                        granted,
                        detail,
                    }
                }
                Request::Analyze { interval, since } => {
                    let now = self.clock.now();
                    let analyzer = self.analyzer.clone();
                    let backend = self.backend.clone();
                    // The live split is re-read with every analysis: drift is never a pass.
                    let guards = run.plan().readiness.guards.clone();
                    let both = async {
                        let (mut a, live, g) = tokio::join!(
                            analyzer.analyze(now, interval, &since),
                            backend.get_weights(),
                            crate::readiness::guards(&analyzer, &guards, now)
                        );
                        a.guards = g;
                        (a, live.map_err(|e| e.to_string()))
                    };
                    tokio::select! {
                        (a, live) = both => Observation::Analyzed { now: self.clock.now(), analysis: a, live: Some(live) },
                        s = wait_signal(&mut self.shutdown) => Observation::Interrupted { now: self.clock.now(), signal: s },
                    }
                }
            };
        }
    }
}

impl Driver {
    /// The commands in the mailbox the run has not answered yet (none in a dry run, which
    /// is no run to command). A mailbox that cannot be read is said, and tried again after
    /// the next sleep.
    async fn new_commands(&self, run: &Run) -> Vec<Command> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        if run.state().dry_run {
            return Vec::new();
        }
        match store.commands().await {
            Ok(list) => list
                .into_iter()
                .filter(|c| !run.state().operator.iter().any(|a| a.command.id == c.id))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read operator commands; trying again after the next interval");
                Vec::new()
            }
        }
    }
}

/// POSTs the run's state to an approval webhook: a 2xx answer within 10 s approves.
async fn ask_approval(url: &str, state: &cutover_core::run::RunState) -> (bool, String) {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let http = HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default()
    });
    let body = serde_json::json!({
        "service": state.service,
        "run_id": state.run_id,
        "phase": state.display_phase(),
        "awaiting_stage": state.awaiting.map(|a| a.stage + 1),
        "weights": state.weights,
        "state": state,
    });
    match http.post(url).json(&body).send().await {
        Ok(r) if r.status().is_success() => (true, format!("HTTP {}", r.status().as_u16())),
        Ok(r) => (false, format!("HTTP {}", r.status().as_u16())),
        Err(e) => (false, format!("no answer: {e}")),
    }
}

/// Why a write did not stick.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The backend refused or failed the write, the wait or the read-back.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The write was accepted but the object reads back something else.
    #[error("wrote {wrote} but read back {read}")]
    Mismatch {
        /// What was written.
        wrote: Weights,
        /// What was read back.
        read: Weights,
    },
}

impl WriteError {
    /// Whether retrying the same write may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            WriteError::Backend(e) => e.is_retryable(),
            WriteError::Mismatch { .. } => true,
        }
    }
}

/// Writes (with the run's `note`), waits until applied, then reads back: only a read-back
/// equal to what was written counts.
pub async fn write_and_verify(
    backend: &dyn TrafficBackend,
    w: Weights,
    note: &str,
) -> Result<Weights, WriteError> {
    let applied = backend.set_weights(w, note).await?;
    backend.wait_applied(&applied).await?;
    let back = backend.get_weights().await?;
    if back != w {
        return Err(WriteError::Mismatch {
            wrote: w,
            read: back,
        });
    }
    Ok(back)
}

/// A write that did not stick.
#[derive(Debug)]
pub struct WriteFailure {
    /// What went wrong.
    pub error: WriteError,
    /// The live split read right after the failure, or why it could not be read: what is
    /// live decides whether a failed rollback is done anyway or pages, and the page says it.
    pub live: Result<Weights, String>,
}

/// A run's write, and `cutover rollback`'s: [`write_and_verify`], and on failure the live
/// split read back.
pub async fn write_or_read_live(
    backend: &dyn TrafficBackend,
    w: Weights,
    note: &str,
) -> Result<Weights, WriteFailure> {
    match write_and_verify(backend, w, note).await {
        Ok(back) => Ok(back),
        Err(error) => Err(WriteFailure {
            error,
            live: backend.get_weights().await.map_err(|e| e.to_string()),
        }),
    }
}

/// Resolves once a signal arrives that the run has not been told of yet (at once if one
/// arrived unseen); never if the sender is gone. A signal is told once: the sleeps of the
/// rollback it starts (stepped rollback pauses, retry backoff) must not end at once.
async fn wait_signal(rx: &mut Shutdown) -> String {
    loop {
        if rx.has_changed().unwrap_or(false)
            && let Some(s) = rx.borrow_and_update().clone()
        {
            return s;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        if let Some(s) = rx.borrow_and_update().clone() {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, UNIX_EPOCH};

    use cutover_analyzers::simulated::{SimWorld, SimulatedSource};
    use cutover_backends::lock::FileLock;
    use cutover_core::Applied;
    use cutover_core::lock::{LockHolder, ObjectLock};

    use super::*;
    use crate::bench::{judges::Judge, scenarios};
    use crate::clock::SimClock;

    /// In-memory weights the simulated traffic follows; an operator pulls the brake while
    /// the first forward write is in flight.
    struct BrakedMidWrite {
        weights: Mutex<Weights>,
        writes: Mutex<Vec<u8>>,
        world: SimWorld,
        clock: Arc<dyn Clock>,
        lock: Arc<dyn ObjectLock>,
    }

    #[async_trait::async_trait]
    impl TrafficBackend for BrakedMidWrite {
        fn describe(&self) -> String {
            "in-memory weights braked mid-write".into()
        }
        async fn get_weights(&self) -> Result<Weights, BackendError> {
            Ok(*self.weights.lock().unwrap())
        }
        async fn set_weights(&self, w: Weights, _note: &str) -> Result<Applied, BackendError> {
            let first_forward = w.primary() > 0 && self.writes.lock().unwrap().is_empty();
            if first_forward {
                crate::lock::brake(self.lock.as_ref(), "op@host")
                    .await
                    .unwrap();
            }
            self.writes.lock().unwrap().push(w.primary());
            *self.weights.lock().unwrap() = w;
            self.world.set_primary_weight(self.clock.now(), w.primary());
            Ok(Applied {
                weights: w,
                change: None,
            })
        }
    }

    #[tokio::test]
    async fn a_brake_pulled_during_a_forward_write_is_acted_on_as_soon_as_it_lands() {
        let dir = std::env::temp_dir().join(format!("cutover-driver-brake-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let lock: Arc<dyn ObjectLock> = Arc::new(FileLock::new(dir.join("w.json.cutover-lock")));
        let sc = scenarios::all().into_iter().next().unwrap();
        let policy = cutover_core::policy::parse(
            "t.yaml",
            &Judge::Sequential.policy_yaml(&sc),
            Default::default(),
        )
        .unwrap();
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock: Arc<dyn Clock> = Arc::new(SimClock::new(start, f64::INFINITY));
        let world = SimWorld::new(sc.world(1), start);
        let backend = Arc::new(BrakedMidWrite {
            weights: Mutex::new(Weights::ALL_DR),
            writes: Mutex::new(Vec::new()),
            world: world.clone(),
            clock: clock.clone(),
            lock: lock.clone(),
        });
        let owner = Ownership::acquire(
            lock.clone(),
            LockHolder {
                run_id: "r1".into(),
                host: crate::lock::hostname(),
                pid: std::process::id(),
                state: String::new(),
                acquired: 0,
                renewed: 0,
                ttl: 30,
            },
        )
        .await
        .unwrap();
        let (_tx, shutdown) = tokio::sync::watch::channel(None);
        let mut driver = Driver {
            backend: backend.clone(),
            analyzer: Analyzer::new(
                Arc::new(SimulatedSource::new(world, policy.promql.clone())),
                policy.plan.gates.clone(),
            ),
            preflight: Vec::new(),
            clock,
            store: None,
            observers: Vec::new(),
            shutdown,
            owner: Some(Arc::new(owner)),
        };
        let mut run = Run::new(policy.plan.clone(), "r1".into());
        let outcome = driver.drive(&mut run).await;
        assert_eq!(outcome.exit_code(), 4, "{outcome:?}");
        assert!(
            outcome.reason.contains("operator rollback by op@host"),
            "{outcome:?}"
        );
        assert_eq!(
            *backend.writes.lock().unwrap(),
            [10, 0],
            "the in-flight write landed; the next write puts DR back, nothing forward"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `cutover rollback` retries on [`retry_backoff`], and so does a run rolling back:
    /// the run's pauses are that schedule, up to the cap and past it.
    #[test]
    fn the_rollback_command_backs_off_as_a_run_rolling_back_does() {
        use cutover_core::run::{MAX_RETRY_WAIT, RollbackCause, retry_backoff};
        let policy = crate::demo::demo_policy(std::path::Path::new("/nonexistent"));
        let first = policy.plan.rollback.retry_interval.get();
        let mut run = Run::new(policy.plan.clone(), "r1".into());
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
        let mut step = run.step(Observation::Started {
            now: at(0),
            live: Ok(Weights::ALL_DR),
            propagation: Duration::ZERO,
        });
        assert!(matches!(step.request, Request::Preflight), "{step:?}");
        step = run.step(Observation::PreflightDone {
            now: at(0),
            results: Vec::new(),
        });
        let Request::SetWeights(w) = step.request else {
            panic!("{step:?}");
        };
        run.step(Observation::WeightsSet {
            now: at(0),
            weights: w,
        });
        step = run.step(Observation::Braked {
            now: at(1),
            by: "op@host".into(),
        });
        let mut pauses = Vec::new();
        for s in 2.. {
            match step.request {
                Request::SetWeights(w) => {
                    assert_eq!(w, Weights::ALL_DR);
                    step = run.step(Observation::WeightsFailed {
                        now: at(s),
                        error: "API down".into(),
                        retryable: true,
                        live: Some(Ok(Weights::new(10, 90).unwrap())),
                    });
                }
                Request::Sleep(d) => {
                    pauses.push(d);
                    step = run.step(Observation::Slept { now: at(s) });
                }
                Request::Finish(o) => {
                    assert_eq!(o.exit_code(), 10, "{o:?}");
                    break;
                }
                _ => panic!("{step:?}"),
            }
        }
        assert_eq!(
            run.state().rollback.as_ref().map(|r| r.cause),
            Some(RollbackCause::Operator)
        );
        let attempts = policy.plan.rollback.max_attempts;
        assert!(
            retry_backoff(first, attempts - 1) == MAX_RETRY_WAIT,
            "the policy's attempts reach the cap"
        );
        let ours: Vec<Duration> = (1..attempts).map(|n| retry_backoff(first, n)).collect();
        assert_eq!(pauses, ours);
    }
}
