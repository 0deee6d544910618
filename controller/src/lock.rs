//! One writer per traffic object. The lock is the routed object's own (see
//! `cutover_backends::lock`): a record beside the object that every run on that object reads,
//! whatever its policy file, working directory or state store. This module decides what the
//! record means — who holds it, when a holder has expired, whose run an operator's brake
//! stops — over the backend's compare-and-swap.
//!
//! * A run takes the lock before preflight and renews it every `ttl / 3`; a second run is
//!   refused, naming the holder. A lock is taken over only once it has expired (not renewed
//!   for `ttl`); a restarted pod of the *same* run waits for its predecessor's lock to expire
//!   rather than being refused.
//! * Before every weight write and at every analysis the run re-reads the record
//!   ([`Ownership::check`]): if it is no longer the holder it writes nothing more; if an
//!   operator braked it, it writes no forward weight again and rolls back.
//! * `cutover rollback` pulls the brake ([`brake`]), then writes 0 % itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cutover_core::BackendError;
use cutover_core::lock::{Brake, LockHolder, LockRecord, ObjectLock, Versioned};

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This host's name (the pod's name in Kubernetes).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Who the operator is, for the brake record: `user@host (pid N)`.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "someone".into());
    format!("{user}@{} (pid {})", hostname(), std::process::id())
}

/// Why a run may not (or no longer) drive the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Another live run holds it.
    #[error(
        "another cutover run drives {object}: {holder}; wait for it to end, or stop it with `cutover rollback` (a lock not renewed for {ttl}s expires)"
    )]
    Held {
        /// Where the lock lives.
        object: String,
        /// The holder, described.
        holder: String,
        /// Its time to live, seconds.
        ttl: u64,
    },
    /// This run's own lock was not renewed in time: another run may take it any moment.
    #[error(
        "this run's lock {object} expired (last renewed {renewed}); not writing forward until it is renewed"
    )]
    Expired {
        /// Where the lock lives.
        object: String,
        /// When it was last renewed (RFC 3339).
        renewed: String,
    },
    /// The record could not be read to confirm this run still owns the object.
    #[error("cannot read the lock {object} to confirm this run still owns the object: {error}")]
    Unconfirmed {
        /// Where the lock lives.
        object: String,
        /// What went wrong.
        error: String,
    },
    /// The record could not be read or written.
    #[error("cannot use the lock {object}: {error}")]
    Backend {
        /// Where the lock lives.
        object: String,
        /// What went wrong.
        error: String,
    },
}

/// What a check of the lock found that stops this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// An operator pulled the brake on this run.
    Braked(Brake),
    /// The lock is no longer this run's (it stalled past its expiry): `held` when another
    /// run holds it now (write nothing), else it was released by someone else.
    Lost {
        /// What was found, in words.
        detail: String,
        /// Whether another run holds it now.
        held: bool,
    },
}

/// A held lock of a traffic object, renewed in the background until released.
pub struct Ownership {
    lock: Arc<dyn ObjectLock>,
    me: LockHolder,
    renewer: tokio::task::JoinHandle<()>,
}

fn backend_err(lock: &dyn ObjectLock, e: BackendError) -> LockError {
    LockError::Backend {
        object: lock.describe(),
        error: e.to_string(),
    }
}

impl Ownership {
    /// Takes the lock for `me`, or says who holds it. A free or expired lock is taken; a
    /// live holder with the same run id (an earlier pod of this run) is waited for until it
    /// expires, unless it renews meanwhile; any other live holder is refused at once.
    pub async fn acquire(lock: Arc<dyn ObjectLock>, me: LockHolder) -> Result<Self, LockError> {
        let ttl = Duration::from_secs(me.ttl);
        let deadline = tokio::time::Instant::now() + ttl + Duration::from_secs(5);
        let mut waited_on: Option<u64> = None;
        // Bounded: conflicts and waits for an earlier incarnation end by the deadline.
        loop {
            let current = lock
                .read()
                .await
                .map_err(|e| backend_err(lock.as_ref(), e))?;
            let (record, version) = match current {
                Some(Versioned { record, version }) => (record, Some(version)),
                None => (LockRecord::default(), None),
            };
            let now = unix_now();
            // An earlier process of this same run on this host that no longer exists is
            // proof enough: its lock is ours again at once (a restarted local run).
            let own_dead = |h: &LockHolder| {
                h.run_id == me.run_id && h.host == me.host && h.pid != me.pid && !alive(h.pid)
            };
            let is_me =
                |h: &LockHolder| h.run_id == me.run_id && h.host == me.host && h.pid == me.pid;
            if let Some(h) = record.holder.as_ref().filter(|h| is_me(h)) {
                // Our own swap landed though its answer was lost (a retried call, a failed
                // read-back): the lock is ours.
                let renewer = spawn_renewer(lock.clone(), h.clone());
                return Ok(Ownership {
                    lock,
                    me: h.clone(),
                    renewer,
                });
            }
            if let Some(h) = record
                .holder
                .as_ref()
                .filter(|h| !h.expired(now) && !own_dead(h))
            {
                let own_earlier = h.run_id == me.run_id
                    && (&h.host, h.pid) != (&me.host, me.pid)
                    && waited_on.is_none_or(|r| r == h.renewed);
                if !own_earlier || tokio::time::Instant::now() >= deadline {
                    return Err(LockError::Held {
                        object: lock.describe(),
                        holder: h.describe(),
                        ttl: h.ttl,
                    });
                }
                waited_on.get_or_insert(h.renewed);
                tracing::warn!(holder = %h.describe(), "the lock is held by an earlier pod of this run; waiting for it to expire");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if let Some(old) = record.holder.as_ref() {
                tracing::warn!(lock = %lock.describe(), holder = %old.describe(), "taking over an expired lock");
            }
            let mut mine = me.clone();
            mine.acquired = now;
            mine.renewed = now;
            let new = LockRecord {
                holder: Some(mine.clone()),
                brake: record.brake.clone(),
            };
            match lock.swap(version.as_deref(), &new).await {
                Ok(()) if !still_mine(lock.as_ref(), &mine).await => {
                    // An API laxer than its contract (moto accepts a second CREATE of the
                    // lock record) let another run in at the same moment: decide again.
                    if tokio::time::Instant::now() >= deadline {
                        return Err(LockError::Backend {
                            object: lock.describe(),
                            error: "the lock record kept changing while it was taken".into(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(()) => {
                    let renewer = spawn_renewer(lock.clone(), mine.clone());
                    return Ok(Ownership {
                        lock,
                        me: mine,
                        renewer,
                    });
                }
                Err(BackendError::Conflict(_)) if tokio::time::Instant::now() < deadline => {
                    // Someone swapped first: read again and decide again.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(backend_err(lock.as_ref(), e)),
            }
        }
    }

    /// Where the lock lives.
    pub fn describe(&self) -> String {
        self.lock.describe()
    }

    /// The run id this lock is held for.
    pub fn run_id(&self) -> &str {
        &self.me.run_id
    }

    /// Re-reads the record: `Ok(None)` while this run may go on, `Ok(Some(stop))` when it
    /// must stop, `Err` when the record cannot be read (never a licence to write forward).
    pub async fn check(&self) -> Result<Option<Stop>, LockError> {
        let read = self.lock.read().await.map_err(|e| LockError::Unconfirmed {
            object: self.lock.describe(),
            error: e.to_string(),
        })?;
        let record = read.map(|v| v.record).unwrap_or_default();
        if let Some(b) = record.brake.filter(|b| b.run_id == self.me.run_id) {
            return Ok(Some(Stop::Braked(b)));
        }
        match record.holder {
            Some(h)
                if h.run_id == self.me.run_id && h.host == self.me.host && h.pid == self.me.pid =>
            {
                if h.expired(unix_now()) {
                    // Not renewed in time: another run may take it any moment. Not a
                    // licence to write forward until the renewer catches up.
                    return Err(LockError::Expired {
                        object: self.lock.describe(),
                        renewed: cutover_core::lock::rfc3339(h.renewed),
                    });
                }
                Ok(None)
            }
            Some(h) => Ok(Some(Stop::Lost {
                detail: format!(
                    "the lock {} is now held by {}",
                    self.lock.describe(),
                    h.describe()
                ),
                held: !h.expired(unix_now()),
            })),
            None => Ok(Some(Stop::Lost {
                detail: format!(
                    "the lock {} was released by someone else",
                    self.lock.describe()
                ),
                held: false,
            })),
        }
    }

    /// Stops renewing and gives the lock up (keeping any brake, acknowledged if it was ours).
    pub async fn release(self) {
        self.renewer.abort();
        for _ in 0..5 {
            let Ok(Some(v)) = self.lock.read().await else {
                return;
            };
            let mut record = v.record;
            if record.holder.as_ref().map(|h| (&h.run_id, &h.host, h.pid))
                != Some((&self.me.run_id, &self.me.host, self.me.pid))
            {
                return;
            }
            record.holder = None;
            if let Some(b) = record.brake.as_mut().filter(|b| b.run_id == self.me.run_id) {
                b.acknowledged = true;
            }
            match self.lock.swap(Some(&v.version), &record).await {
                Err(BackendError::Conflict(_)) => continue,
                Err(e) => {
                    tracing::warn!(lock = %self.lock.describe(), error = %e, "cannot release the lock; it expires by itself");
                    return;
                }
                Ok(()) => return,
            }
        }
    }
}

/// Whether the record, read again a moment after it was written, still names `me`.
async fn still_mine(lock: &dyn ObjectLock, me: &LockHolder) -> bool {
    tokio::time::sleep(Duration::from_millis(250)).await;
    matches!(
        lock.read().await,
        Ok(Some(Versioned { record: LockRecord { holder: Some(h), .. }, .. }))
            if h.run_id == me.run_id && h.host == me.host && h.pid == me.pid
    )
}

fn spawn_renewer(lock: Arc<dyn ObjectLock>, me: LockHolder) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs(me.ttl.max(3)) / 3;
        loop {
            tokio::time::sleep(every).await;
            let result: Result<bool, BackendError> = async {
                let Some(v) = lock.read().await? else {
                    return Ok(false);
                };
                let mut record = v.record;
                match record.holder.as_mut() {
                    Some(h) if h.run_id == me.run_id && h.host == me.host && h.pid == me.pid => {
                        h.renewed = unix_now();
                    }
                    _ => return Ok(false),
                }
                lock.swap(Some(&v.version), &record).await.map(|()| true)
            }
            .await;
            match result {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(lock = %lock.describe(), "the lock is no longer this run's; the run writes nothing more");
                    return;
                }
                Err(e) => {
                    tracing::error!(lock = %lock.describe(), error = %e, "cannot renew the lock")
                }
            }
        }
    })
}

/// What `cutover rollback` found and did to the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Braking {
    /// The live run braked, if one held the object.
    pub braked: Option<LockHolder>,
}

/// Pulls the emergency brake: the run holding the object (if any, live or not) is marked so
/// that neither it nor a restarted pod of it writes a forward weight again. Returns the
/// holder braked.
pub async fn brake(lock: &dyn ObjectLock, by: &str) -> Result<Braking, LockError> {
    let current = lock.read().await.map_err(|e| backend_err(lock, e))?;
    let Some(holder) = current.and_then(|v| v.record.holder) else {
        return Ok(Braking { braked: None });
    };
    brake_run(lock, &holder.run_id, by).await?;
    Ok(Braking {
        braked: Some(holder),
    })
}

/// Brakes a run by id: the lock's holder, or a run recorded in the state store that holds
/// nothing now (a restarted pod of it must not write forward either). Retries
/// compare-and-swap conflicts (the holder renews concurrently).
pub async fn brake_run(lock: &dyn ObjectLock, run_id: &str, by: &str) -> Result<(), LockError> {
    for _ in 0..20 {
        let current = lock.read().await.map_err(|e| backend_err(lock, e))?;
        let (mut record, version) = match current {
            Some(v) => (v.record, Some(v.version)),
            None => (LockRecord::default(), None),
        };
        if record.brake.as_ref().is_some_and(|b| b.run_id == run_id) {
            return Ok(());
        }
        // Never replace a brake the live holder has not acknowledged yet: that run must stop.
        if let (Some(b), Some(h)) = (&record.brake, &record.holder)
            && !b.acknowledged
            && b.run_id == h.run_id
            && !h.expired(unix_now())
        {
            return Err(LockError::Held {
                object: lock.describe(),
                holder: format!("{} (braked, not yet stopped)", h.describe()),
                ttl: h.ttl,
            });
        }
        record.brake = Some(Brake {
            run_id: run_id.to_string(),
            by: by.to_string(),
            at: unix_now(),
            acknowledged: false,
        });
        match lock.swap(version.as_deref(), &record).await {
            Ok(()) => return Ok(()),
            Err(BackendError::Conflict(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(backend_err(lock, e)),
        }
    }
    Err(LockError::Backend {
        object: lock.describe(),
        error: "the record kept changing under 20 attempts to brake".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_backends::lock::FileLock;

    fn holder(run: &str, pid: u32, ttl: u64) -> LockHolder {
        LockHolder {
            run_id: run.into(),
            host: hostname(),
            pid,
            state: "file /tmp/x".into(),
            acquired: 0,
            renewed: 0,
            ttl,
        }
    }

    fn temp_lock(name: &str) -> Arc<dyn ObjectLock> {
        let dir = std::env::temp_dir().join(format!("cutover-lock-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Arc::new(FileLock::new(dir.join("w.json.cutover-lock")))
    }

    #[tokio::test]
    async fn a_second_run_is_refused_naming_the_holder_and_expired_locks_are_taken_over() {
        let lock = temp_lock("second");
        let a = Ownership::acquire(lock.clone(), holder("run-a", 1, 30))
            .await
            .unwrap();
        let e = Ownership::acquire(lock.clone(), holder("run-b", 2, 30))
            .await
            .err()
            .unwrap();
        let text = e.to_string();
        assert!(
            text.contains("run run-a") && text.contains("pid 1"),
            "{text}"
        );
        assert_eq!(a.check().await.unwrap(), None);
        a.release().await;
        let b = Ownership::acquire(lock.clone(), holder("run-b", 2, 30))
            .await
            .unwrap();
        // Expire b's lock by hand: a stalled holder is taken over, and then learns it lost.
        let v = lock.read().await.unwrap().unwrap();
        let mut r = v.record.clone();
        r.holder.as_mut().unwrap().renewed = unix_now() - 100;
        lock.swap(Some(&v.version), &r).await.unwrap();
        let c = Ownership::acquire(lock.clone(), holder("run-c", 3, 30))
            .await
            .unwrap();
        assert!(matches!(
            b.check().await.unwrap(),
            Some(Stop::Lost { held: true, .. })
        ));
        assert_eq!(c.check().await.unwrap(), None);
        c.release().await;
    }

    #[tokio::test]
    async fn a_brake_stops_only_the_run_it_names_and_outlives_the_holder() {
        let lock = temp_lock("brake");
        let a = Ownership::acquire(lock.clone(), holder("run-a", 1, 30))
            .await
            .unwrap();
        let b = brake(lock.as_ref(), "op@host").await.unwrap();
        assert_eq!(b.braked.unwrap().run_id, "run-a");
        assert!(matches!(a.check().await.unwrap(), Some(Stop::Braked(_))));
        a.release().await;
        let rec = lock.read().await.unwrap().unwrap().record;
        assert!(rec.holder.is_none() && rec.brake.as_ref().unwrap().acknowledged);
        // A restarted pod of run-a is still braked; a new run is not.
        let again = Ownership::acquire(lock.clone(), holder("run-a", 9, 30))
            .await
            .unwrap();
        assert!(matches!(
            again.check().await.unwrap(),
            Some(Stop::Braked(_))
        ));
        again.release().await;
        let fresh = Ownership::acquire(lock.clone(), holder("run-z", 9, 30))
            .await
            .unwrap();
        assert_eq!(fresh.check().await.unwrap(), None);
        fresh.release().await;
    }

    #[tokio::test]
    async fn a_record_naming_this_very_process_is_ours_not_a_refusal() {
        let lock = temp_lock("self");
        let me = holder("run-a", std::process::id(), 30);
        let rec = LockRecord {
            holder: Some(LockHolder {
                renewed: unix_now(),
                ..me.clone()
            }),
            brake: None,
        };
        // As if our swap landed but its answer was lost.
        lock.swap(None, &rec).await.unwrap();
        let o = Ownership::acquire(lock.clone(), me).await.unwrap();
        assert_eq!(o.check().await.unwrap(), None);
        o.release().await;
    }

    #[tokio::test]
    async fn an_expired_own_lock_is_no_licence_to_write() {
        let lock = temp_lock("expired-own");
        let o = Ownership::acquire(lock.clone(), holder("run-a", 7, 30))
            .await
            .unwrap();
        let v = lock.read().await.unwrap().unwrap();
        let mut r = v.record.clone();
        r.holder.as_mut().unwrap().renewed = unix_now() - 100;
        lock.swap(Some(&v.version), &r).await.unwrap();
        let e = o.check().await.unwrap_err();
        assert!(matches!(e, LockError::Expired { .. }), "{e}");
        assert!(e.to_string().contains("expired"), "{e}");
        o.release().await;
    }

    #[tokio::test]
    async fn a_second_brake_never_replaces_one_the_live_holder_has_not_seen() {
        let lock = temp_lock("two-brakes");
        let a = Ownership::acquire(lock.clone(), holder("run-a", 1, 30))
            .await
            .unwrap();
        brake(lock.as_ref(), "op1").await.unwrap();
        let e = brake_run(lock.as_ref(), "old-run", "op2")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("braked, not yet stopped"), "{e}");
        assert!(matches!(a.check().await.unwrap(), Some(Stop::Braked(_))));
        a.release().await;
    }

    #[tokio::test]
    async fn twenty_simultaneous_acquires_give_exactly_one_holder() {
        for round in 0..20 {
            let lock = temp_lock(&format!("race{round}"));
            let mut tasks = Vec::new();
            for i in 0..2u32 {
                let l = lock.clone();
                tasks.push(tokio::spawn(async move {
                    Ownership::acquire(l, holder(&format!("run-{i}"), 100 + i, 30)).await
                }));
            }
            let mut won = Vec::new();
            for t in tasks {
                if let Ok(o) = t.await.unwrap() {
                    won.push(o);
                }
            }
            assert_eq!(won.len(), 1, "round {round}");
            for o in won {
                o.release().await;
            }
        }
    }
}
