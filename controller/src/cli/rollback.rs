//! `cutover rollback`: the emergency brake.

use std::time::{Duration, SystemTime};

use cutover::driver::{write_and_verify, write_or_read_live};
use cutover::lock::{operator, unix_now};
use cutover_core::policy::{LoadedPolicy, RollbackSpec};
use cutover_core::run::Run;
use cutover_core::run::retry_backoff;
use cutover_core::{TrafficBackend, Weights};

use super::EXIT_ROLLBACK_FAILED;
use super::common::{Common, connect};

/// `cutover rollback`: brake, write 0 %, verify, and watch until the braked run has stopped.
pub(crate) async fn rollback(
    p: LoadedPolicy,
    common: Common,
    watch: Duration,
) -> anyhow::Result<u8> {
    let backend = connect(&p, &common).await?;
    let by = operator();
    // 1. The brake, where the run must look before every write: the object's lock.
    let mut braked_run = None;
    let mut brake_failed = None;
    let mut stopped_record = None;
    if let Some(lock) = backend.object_lock() {
        match cutover::lock::brake(lock.as_ref(), &by).await {
            Ok(b) => {
                if let Some(h) = &b.braked {
                    super::out::line(&format!("braked:  {} ({})", h.describe(), lock.describe()));
                }
                braked_run = b.braked;
            }
            Err(e) => {
                super::out::err(&format!(
                    "cutover: cannot brake through the lock: {e}; rolling back anyway"
                ));
                brake_failed = Some(e.to_string());
            }
        }
        // 2. A run recorded in the state store but not holding the lock (killed, not yet
        //    restarted) is braked by id, and its record is finished: no restart resumes it.
        if let Ok(store) = common.store(&p.policy.service).await
            && let Ok(Some(state)) = store.load().await
            && state.service == p.policy.service
            // A resumable run, or a held one (traffic left at a stage for `cutover resume`).
            && (Run::resumable(&state) || state.phase == cutover_core::run::Phase::Held)
            // A live run braked above keeps its brake: one brake per object at a time.
            && braked_run.is_none()
            && brake_failed.is_none()
        {
            if let Err(e) = cutover::lock::brake_run(lock.as_ref(), &state.run_id, &by).await {
                super::out::err(&format!("cutover: cannot brake run {}: {e}", state.run_id));
            }
            stopped_record = Some((store, state));
        }
    }
    // 3. The write, verified by reading back, retried until it sticks.
    let written = write_all_dr(backend.as_ref(), &p.policy.rollback).await;
    if let Ok(w) = &written {
        super::out::line(&format!(
            "rolled back: {w} on {} (verified by reading back)",
            backend.describe()
        ));
    }
    // The stopped run's record says how it ended, once traffic is verified on DR.
    if let (Ok(_), Some((store, mut state))) = (&written, stopped_record) {
        Run::mark_operator_rollback(&mut state, &by, SystemTime::now());
        match store.save(&state).await {
            Ok(()) => super::out::line(&format!(
                "recorded: run {} ended by this operator rollback ({})",
                state.run_id,
                store.describe()
            )),
            Err(e) => super::out::err(&format!(
                "cutover: cannot record the rollback in the run state: {e}"
            )),
        }
    }
    if let Err(live) = written {
        let live = match live {
            Ok(w) => format!("the live weights read {w}"),
            Err(e) => format!("the live weights cannot be read: {e}"),
        };
        super::out::err(&format!(
            "cutover: PAGE NOW: rollback to DR could not be applied on {}; {live}",
            backend.describe()
        ));
        return Ok(EXIT_ROLLBACK_FAILED);
    }
    if let Some(e) = brake_failed {
        super::out::err(&format!(
            "cutover: PAGE NOW: all traffic is on DR (verified), but a running cutover could not be braked ({e}); \
             it may write a forward weight again: stop its Job or process"
        ));
        return Ok(EXIT_ROLLBACK_FAILED);
    }
    // 4. A braked live run may have had a forward write in flight: watch until it says it
    //    has stopped (releases the lock, acknowledging the brake), putting DR back if needed.
    let (Some(h), Some(lock)) = (braked_run, backend.object_lock()) else {
        return Ok(0);
    };
    let until = tokio::time::Instant::now() + watch;
    loop {
        let record = lock.read().await.ok().flatten().map(|v| v.record);
        let stopped = record.as_ref().is_none_or(|r| {
            r.holder
                .as_ref()
                .is_none_or(|x| x.run_id != h.run_id || x.expired(unix_now()))
        });
        match backend.get_weights().await {
            Ok(w) if w != Weights::ALL_DR => {
                super::out::err(&format!(
                    "cutover: the braked run's write landed ({w}); putting all traffic on DR again"
                ));
                if let Err(e) =
                    write_and_verify(backend.as_ref(), Weights::ALL_DR, ROLLBACK_NOTE).await
                {
                    super::out::err(&format!("cutover: rewrite failed: {e}"));
                }
            }
            _ if stopped => {
                super::out::line(&format!(
                    "stopped:  run {} has stopped; traffic stays on DR",
                    h.run_id
                ));
                return Ok(0);
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= until {
            match backend.get_weights().await {
                Ok(w) if w == Weights::ALL_DR => {}
                other => {
                    let read = match other {
                        Ok(w) => format!("the live weights read {w}"),
                        Err(e) => format!("the live weights cannot be read: {e}"),
                    };
                    super::out::err(&format!(
                        "cutover: PAGE NOW: run {} has not stopped within {} and {read}",
                        h.run_id,
                        humantime::format_duration(watch)
                    ));
                    return Ok(EXIT_ROLLBACK_FAILED);
                }
            }
            super::out::line(&format!(
                "waiting:  run {} has not acknowledged the brake within {} (hung, or on another machine); \
                 it checks the brake before every write and will roll back instead of advancing",
                h.run_id,
                humantime::format_duration(watch)
            ));
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Recorded with the operator's writes where the backend can (a change comment, an
/// annotation).
const ROLLBACK_NOTE: &str = "cutover rollback (operator)";

/// Writes all traffic to DR the way a run's rollback does ([`write_or_read_live`]),
/// retried on the run's schedule ([`retry_backoff`]) up to `rollback.max_attempts` times.
/// Each failure is printed; the last one's live split is returned for the page. As in the
/// run, a failed write with the live split read all on DR is done, not a page: traffic is
/// where the operator asked.
async fn write_all_dr(
    backend: &dyn TrafficBackend,
    spec: &RollbackSpec,
) -> Result<Weights, Result<Weights, String>> {
    let mut failed = 0;
    loop {
        match write_or_read_live(backend, Weights::ALL_DR, ROLLBACK_NOTE).await {
            Ok(w) => return Ok(w),
            Err(f) => {
                failed += 1;
                super::out::err(&format!(
                    "rollback attempt {failed}/{} failed: {}",
                    spec.max_attempts, f.error
                ));
                if f.live == Ok(Weights::ALL_DR) {
                    super::out::err(
                        "the live weights already read all on DR: nothing left to write",
                    );
                    return Ok(Weights::ALL_DR);
                }
                if failed >= spec.max_attempts {
                    return Err(f.live);
                }
                tokio::time::sleep(retry_backoff(spec.retry_interval.get(), failed)).await;
            }
        }
    }
}
