//! One controller per service: a lock file beside the run state, held and renewed while a
//! run drives the service. A second run refuses, naming the holder. A lock whose holder is
//! gone (its process no longer exists on this host, or it stopped renewing for longer than
//! the time-to-live) is stale and taken over.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What a lock file says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// The run id.
    pub run_id: String,
    /// When the lock was taken (Unix seconds).
    pub acquired: u64,
    /// When it was last renewed (Unix seconds).
    pub renewed: u64,
}

impl Holder {
    fn describe(&self) -> String {
        format!(
            "run {} (pid {} on host {}, since {})",
            self.run_id,
            self.pid,
            self.host,
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(self.acquired))
        )
    }
}

/// A held lock; renewed by a background task, released when dropped.
pub struct RunLock {
    path: PathBuf,
    renewer: tokio::task::JoinHandle<()>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This host's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn write(path: &Path, h: &Holder, create_new: bool) -> std::io::Result<()> {
    let body = serde_json::to_vec(h).expect("holder serializes");
    if create_new {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        f.write_all(&body)?;
        f.sync_all()
    } else {
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, &body)?;
        std::fs::rename(&tmp, path)
    }
}

impl RunLock {
    /// Takes the lock at `path` for `run_id`, or says who holds it.
    pub fn acquire(path: &Path, run_id: &str, ttl: Duration) -> Result<RunLock, String> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "cannot create the folder of the lock {}: {e}",
                    path.display()
                )
            })?;
        }
        let me = Holder {
            pid: std::process::id(),
            host: hostname(),
            run_id: run_id.to_string(),
            acquired: unix_now(),
            renewed: unix_now(),
        };
        for _ in 0..2 {
            match write(path, &me, true) {
                Ok(()) => {
                    let (p, h) = (path.to_path_buf(), me.clone());
                    let renewer = tokio::spawn(async move {
                        let mut h = h;
                        loop {
                            tokio::time::sleep(ttl / 3).await;
                            h.renewed = unix_now();
                            if let Err(e) = write(&p, &h, false) {
                                tracing::error!(lock = %p.display(), error = %e, "cannot renew the run lock");
                            }
                        }
                    });
                    return Ok(RunLock {
                        path: path.to_path_buf(),
                        renewer,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder: Option<Holder> = std::fs::read(path)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                    let stale = match &holder {
                        None => true,
                        Some(h) => {
                            (h.host == me.host && !alive(h.pid))
                                || unix_now().saturating_sub(h.renewed) > ttl.as_secs()
                        }
                    };
                    if !stale {
                        let h = holder.expect("not stale means a holder");
                        return Err(format!(
                            "another cutover run drives this service: {} holds {}; wait for it to end \
                             (a lock not renewed for {} expires)",
                            h.describe(),
                            path.display(),
                            humantime::format_duration(ttl)
                        ));
                    }
                    tracing::warn!(lock = %path.display(), holder = ?holder, "taking over a stale run lock");
                    let _ = std::fs::remove_file(path);
                }
                Err(e) => return Err(format!("cannot create the lock {}: {e}", path.display())),
            }
        }
        Err(format!(
            "could not take the lock {}: another run took it at the same moment",
            path.display()
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        self.renewer.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A held Kubernetes Lease, renewed in the background until released.
pub struct LeaseLock {
    lease: std::sync::Arc<cutover_backends::k8s_state::Lease>,
    renewer: tokio::task::JoinHandle<()>,
}

impl LeaseLock {
    /// Takes the Lease or says who holds it; renews it every `ttl / 3`. A Lease held by an
    /// earlier incarnation of the same run (holder starting with `patient_for`: a killed pod
    /// of this Job) is waited for until it expires, rather than refused.
    pub async fn acquire(
        lease: cutover_backends::k8s_state::Lease,
        ttl: Duration,
        patient_for: Option<&str>,
    ) -> Result<LeaseLock, String> {
        let deadline = tokio::time::Instant::now() + ttl + Duration::from_secs(5);
        let mut first_seen: Option<String> = None;
        loop {
            match lease.acquire().await {
                Ok(()) => break,
                Err((Some((holder, renewed)), why))
                    if patient_for.is_some_and(|p| holder.starts_with(p))
                        && first_seen.as_ref().is_none_or(|r| *r == renewed)
                        && tokio::time::Instant::now() < deadline =>
                {
                    // Not renewed since we first looked: the holder may be dead; wait for expiry.
                    // A renewal while we wait means it is alive: refuse (next iteration).
                    first_seen.get_or_insert(renewed);
                    tracing::warn!(%holder, "{why}; waiting for the Lease of an earlier incarnation of this run to expire");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err((_, why)) => return Err(why),
            }
        }
        let lease = std::sync::Arc::new(lease);
        let l = lease.clone();
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if let Err(e) = l.renew().await {
                    tracing::error!(error = %e, "cannot renew the run Lease");
                }
            }
        });
        Ok(LeaseLock { lease, renewer })
    }

    /// Stops renewing and gives the Lease up.
    pub async fn release(self) {
        self.renewer.abort();
        self.lease.release().await;
    }
}

/// The one-controller-per-service lock a run holds: a lock file, or a Lease in a Job.
pub enum Held {
    /// A lock file (released on drop).
    File(RunLock),
    /// A Kubernetes Lease.
    Lease(LeaseLock),
}

impl Held {
    /// Releases the lock.
    pub async fn release(self) {
        match self {
            Held::File(l) => drop(l),
            Held::Lease(l) => l.release().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_acquire_names_the_holder_and_stale_locks_are_taken_over() {
        let dir = std::env::temp_dir().join(format!("cutover-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("svc.lock");
        let lock = RunLock::acquire(&path, "run-a", Duration::from_secs(30)).unwrap();
        let e = RunLock::acquire(&path, "run-b", Duration::from_secs(30))
            .err()
            .unwrap();
        assert!(
            e.contains("run run-a") && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(lock);
        assert!(!path.exists(), "released on drop");
        // A holder whose process is gone is stale.
        let dead = Holder {
            pid: u32::MAX - 1,
            host: hostname(),
            run_id: "gone".into(),
            acquired: 0,
            renewed: unix_now(),
        };
        write(&path, &dead, true).unwrap();
        let lock = RunLock::acquire(&path, "run-c", Duration::from_secs(30)).unwrap();
        drop(lock);
        // A holder on another host that stopped renewing is stale after the TTL.
        let quiet = Holder {
            pid: 1,
            host: "elsewhere".into(),
            run_id: "old".into(),
            acquired: 0,
            renewed: unix_now() - 100,
        };
        write(&path, &quiet, true).unwrap();
        assert!(RunLock::acquire(&path, "run-d", Duration::from_secs(30)).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
