//! The lock of a traffic object: one record, kept beside the object every controller that
//! could touch it must read, saying which run drives it (and until when) and whether an
//! operator has pulled the emergency brake on that run.
//!
//! A backend only stores the record with compare-and-swap ([`ObjectLock`]); what a holder,
//! an expiry or a brake means is decided in one place, by the controller. Where the record
//! lives: the file backend keeps it in a file beside the weights file, the Kubernetes
//! backends in a `coordination.k8s.io/v1` Lease named from the routed object, Route 53 in a
//! TXT record beside the weighted records.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::BackendError;

/// Who drives a traffic object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The run's id.
    pub run_id: String,
    /// The host (a pod's name in Kubernetes).
    pub host: String,
    /// The process id on that host.
    pub pid: u32,
    /// Where the run keeps its state (a file, a ConfigMap), for people looking for it.
    #[serde(default)]
    pub state: String,
    /// When the lock was taken (Unix seconds).
    pub acquired: u64,
    /// When it was last renewed (Unix seconds).
    pub renewed: u64,
    /// Seconds after `renewed` when the lock expires if not renewed again.
    pub ttl: u64,
}

impl LockHolder {
    /// Whether the lock has expired at `now` (Unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        now > self.renewed.saturating_add(self.ttl)
    }

    /// `run X (pid P on host H, since T, state S)`, for refusals and `cutover status`.
    pub fn describe(&self) -> String {
        format!(
            "run {} (pid {} on host {}, since {}, renewed {}{})",
            self.run_id,
            self.pid,
            self.host,
            rfc3339(self.acquired),
            rfc3339(self.renewed),
            if self.state.is_empty() {
                String::new()
            } else {
                format!(", state in {}", self.state)
            }
        )
    }
}

/// An operator's emergency brake on one run: that run must never write a forward weight again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brake {
    /// The run it stops.
    pub run_id: String,
    /// Who pulled it (user@host, pid).
    pub by: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Whether the braked run has seen it and stopped.
    #[serde(default)]
    pub acknowledged: bool,
}

/// The whole lock record of a traffic object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LockRecord {
    /// The run holding the object, if any.
    #[serde(default)]
    pub holder: Option<LockHolder>,
    /// The last emergency brake pulled on this object, if any.
    #[serde(default)]
    pub brake: Option<Brake>,
}

/// A lock record as read, with the version a compare-and-swap must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The record.
    pub record: LockRecord,
    /// Opaque: a resourceVersion, the file's or the TXT record's exact content.
    pub version: String,
}

/// Where a traffic object's lock record lives: read it, or replace it atomically.
#[async_trait]
pub trait ObjectLock: Send + Sync {
    /// Where the record lives, e.g. `Lease production/cutover-virtualservice-checkout-…`.
    fn describe(&self) -> String;
    /// Reads the record; `None` when there is none yet.
    async fn read(&self) -> Result<Option<Versioned>, BackendError>;
    /// Replaces the record read at version `expected` (`None`: there was none) with `new`.
    /// [`BackendError::Conflict`] when someone else changed it in between.
    async fn swap(&self, expected: Option<&str>, new: &LockRecord) -> Result<(), BackendError>;
}

/// RFC 3339 text of Unix seconds.
pub fn rfc3339(secs: u64) -> String {
    // A record is read from outside: a time past 9999-12-31 is shown as its number rather
    // than panicking in the formatter.
    const LAST: u64 = 253_402_300_799;
    if secs > LAST {
        return format!("{secs} s after the Unix epoch");
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// A stable 64-bit FNV-1a hash, for lock names derived from an object's identity. Hand-rolled
/// (five lines) because the name must not change between releases, which `std`'s hasher
/// does not promise.
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_description() {
        let h = LockHolder {
            run_id: "r1".into(),
            host: "h".into(),
            pid: 7,
            state: "file /x".into(),
            acquired: 100,
            renewed: 100,
            ttl: 30,
        };
        assert!(!h.expired(130));
        assert!(h.expired(131));
        let d = h.describe();
        assert!(
            d.contains("run r1") && d.contains("pid 7") && d.contains("host h"),
            "{d}"
        );
        assert!(d.contains("1970-01-01T00:01:40Z"), "{d}");
        assert!(rfc3339(u64::MAX).contains("after the Unix epoch"));
        let far = LockHolder {
            acquired: u64::MAX,
            renewed: u64::MAX,
            ..h.clone()
        };
        assert!(far.describe().contains("after the Unix epoch"));
        assert!(!far.expired(0));
        assert_ne!(stable_hash("a"), stable_hash("b"));
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
    }
}
