//! Drives a fleet: asks the schedule what to do, has the executor do it, tells the schedule
//! how each cutover ended, and saves the fleet's state after every change (a restarted
//! orchestrator resumes from it and never starts a finished service again).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cutover_core::fleet::{Fleet, FleetAction, FleetOutcome, FleetState, SvcStatus};

use super::executor::Executor;
use super::store::{FleetStore, FolderStore};

/// The fleet's state file in a state folder.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("fleet.json")
}

/// The file `cutover fleet abort` writes (who asked); the driver picks it up within a second.
pub fn abort_file(dir: &Path) -> PathBuf {
    dir.join("abort")
}

/// Reads a fleet's saved state.
pub fn load_state(dir: &Path) -> Result<Option<FleetState>, String> {
    match std::fs::read(state_file(dir)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", state_file(dir).display())),
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{} is not a fleet state: {e}", state_file(dir).display())),
    }
}

/// A line of the fleet's log, for people.
fn say(fleet: &str, what: &str) {
    let t = humantime::format_rfc3339_seconds(SystemTime::now());
    // Never a panic on a closed stdout: a fleet outlives whoever watched it start.
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_fmt(&mut out, format_args!("{t} fleet {fleet}: {what}\n"));
}

/// Runs `fleet` to its end with `executor`, saving its state in `dir`. `shutdown` resolves
/// on SIGTERM/SIGINT: the fleet is then aborted (running cutovers roll back, exit 4).
pub async fn drive(
    fleet: &mut Fleet,
    executor: &dyn Executor,
    dir: &Path,
    shutdown: crate::driver::Shutdown,
) -> FleetOutcome {
    drive_with(fleet, executor, &FolderStore::new(dir), shutdown).await
}

/// [`drive`] with the fleet's state in `store` (a folder, a ConfigMap). A store whose
/// Lease another orchestrator took stops this one at once (exit 2): the other drives.
pub async fn drive_with(
    fleet: &mut Fleet,
    executor: &dyn Executor,
    store: &dyn FleetStore,
    mut shutdown: crate::driver::Shutdown,
) -> FleetOutcome {
    let name = fleet.state().fleet.clone();
    let run_id = fleet.state().run_id.clone();
    // Services another process drives (a child left from a killed orchestrator): watched
    // through their records until they end.
    let mut adopted: BTreeSet<usize> = BTreeSet::new();
    // Aborts that did not take (the child had no record yet, or the post failed): tried
    // again every few seconds until the service's cutover ends.
    let mut abort_again: std::collections::BTreeMap<usize, std::time::Instant> =
        std::collections::BTreeMap::new();
    // A restarted orchestrator: what ended while it was away, and what it starts again.
    for i in 0..fleet.plan().services.len() {
        if matches!(fleet.state().services[i].1, SvcStatus::Running { .. }) {
            let s = &fleet.plan().services[i];
            if let Some(e) = executor.finished(s, &format!("{run_id}-{}", s.name)).await {
                say(
                    &name,
                    &format!(
                        "{} ended while the orchestrator was away: exit {}",
                        s.name, e.exit
                    ),
                );
                fleet.ended(i, e.exit, e.reason, SystemTime::now());
            } else {
                say(
                    &name,
                    &format!(
                        "{} was running: starting it again (its run resumes)",
                        s.name
                    ),
                );
                if let Err(e) = executor.start(s, &format!("{run_id}-{}", s.name)).await {
                    fleet.ended(i, 2, e, SystemTime::now());
                }
            }
        }
    }
    loop {
        if let Err(e) = store.lost().await {
            say(
                &name,
                &format!("stopping: another orchestrator drives the fleet: {e}"),
            );
            return FleetOutcome { exit: 2, reason: e };
        }
        if let Err(e) = store.save(fleet.state()).await {
            say(&name, &format!("WARNING: {e}"));
        }
        if let Some(by) = store.take_abort().await {
            say(&name, &format!("abort asked by {by}"));
            fleet.abort(by);
        }
        if shutdown.has_changed().unwrap_or(false)
            && let Some(sig) = shutdown.borrow_and_update().clone()
        {
            fleet.abort(format!("{sig} to the orchestrator"));
        }
        let actions = fleet.next(SystemTime::now());
        // A service is recorded as running before its cutover is started: a restarted
        // orchestrator then finds it (and adopts its Job) instead of forgetting it.
        if actions.iter().any(|a| matches!(a, FleetAction::Start(_))) {
            if let Err(e) = store.lost().await {
                say(
                    &name,
                    &format!("stopping: another orchestrator drives the fleet: {e}"),
                );
                return FleetOutcome { exit: 2, reason: e };
            }
            if let Err(e) = store.save(fleet.state()).await {
                let reason = format!(
                    "cannot record the fleet's state before starting a cutover ({e}); nothing more is started; cutovers under way go on by themselves: restart the orchestrator once the store is back"
                );
                say(&name, &reason);
                return FleetOutcome { exit: 2, reason };
            }
        }
        let mut waited = false;
        for a in actions {
            match a {
                FleetAction::Start(i) => {
                    let s = fleet.plan().services[i].clone();
                    say(&name, &format!("starting {} (layer {})", s.name, s.layer));
                    if let Err(e) = executor.start(&s, &format!("{run_id}-{}", s.name)).await {
                        say(&name, &format!("cannot start {}: {e}", s.name));
                        fleet.ended(i, 2, e, SystemTime::now());
                    }
                }
                FleetAction::Abort(i) => {
                    let s = fleet.plan().services[i].clone();
                    say(&name, &format!("aborting {}", s.name));
                    if let Err(e) = executor.abort(&s).await {
                        say(&name, &format!("abort of {}: {e}; trying again", s.name));
                        abort_again.insert(i, std::time::Instant::now());
                    }
                }
                FleetAction::Rollback(i) => {
                    let s = fleet.plan().services[i].clone();
                    say(&name, &format!("rolling back {} (rollback_fleet)", s.name));
                    let (ok, detail) = match executor.rollback(&s).await {
                        Ok(d) => (true, d),
                        Err(d) => (false, d),
                    };
                    say(&name, &detail);
                    fleet.rolled_back(i, ok, detail, SystemTime::now());
                }
                FleetAction::Wait(d) => {
                    if !waited {
                        tokio::select! {
                            _ = tokio::time::sleep(d.min(Duration::from_secs(1))) => {}
                            _ = shutdown.changed() => {}
                        }
                        waited = true;
                    }
                }
                FleetAction::Finish(o) => {
                    let _ = store.save(fleet.state()).await;
                    say(&name, &format!("finished (exit {}): {}", o.exit, o.reason));
                    return o;
                }
            }
        }
        for e in executor.poll().await {
            let Some(i) = fleet.plan().index(&e.service) else {
                continue;
            };
            let s = fleet.plan().services[i].clone();
            if e.exit == 2
                && executor
                    .driven_elsewhere(&s, &format!("{run_id}-{}", s.name))
                    .await
            {
                // Refused: another process still drives this service's run (an orphan of a
                // killed orchestrator): watch its record instead.
                say(
                    &name,
                    &format!(
                        "{} is driven by another process; watching its record",
                        s.name
                    ),
                );
                adopted.insert(i);
                continue;
            }
            say(
                &name,
                &format!("{} ended: exit {}: {}", s.name, e.exit, e.reason),
            );
            fleet.ended(i, e.exit, e.reason, SystemTime::now());
        }
        let retry: Vec<usize> = abort_again
            .iter()
            .filter(|(_, t)| t.elapsed() >= Duration::from_secs(5))
            .map(|(i, _)| *i)
            .collect();
        for i in retry {
            if !matches!(fleet.state().services[i].1, SvcStatus::Running { .. }) {
                abort_again.remove(&i);
                continue;
            }
            let s = fleet.plan().services[i].clone();
            match executor.abort(&s).await {
                Ok(()) => {
                    say(&name, &format!("aborting {}: acknowledged", s.name));
                    abort_again.remove(&i);
                }
                Err(_) => {
                    abort_again.insert(i, std::time::Instant::now());
                }
            }
        }
        let watching: Vec<usize> = adopted.iter().copied().collect();
        for i in watching {
            let s = fleet.plan().services[i].clone();
            if let Some(e) = executor.finished(&s, &format!("{run_id}-{}", s.name)).await {
                adopted.remove(&i);
                say(
                    &name,
                    &format!("{} ended: exit {}: {}", s.name, e.exit, e.reason),
                );
                fleet.ended(i, e.exit, e.reason, SystemTime::now());
            }
        }
    }
}
