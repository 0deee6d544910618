//! The port every traffic backend implements: read the split, write it, wait for it.
//!
//! One trait, [`TrafficBackend`], with one implementation per file in `backends/`. The core
//! never sees a Kubernetes client or an AWS SDK type.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::lock::ObjectLock;
use crate::weights::Weights;

/// Proof that a write was accepted, to wait on until it is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The weights that were written.
    pub weights: Weights,
    /// A backend-specific handle of the change (a Route 53 change id, a resourceVersion).
    pub change: Option<String>,
}

/// Why a backend could not read or write the split.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The routed object (file, VirtualService, record) does not exist.
    #[error("{what} was not found: {hint}")]
    NotFound {
        /// The object that is missing.
        what: String,
        /// How to fix it.
        hint: String,
    },
    /// The backend refused our credentials for this verb on this object.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Someone else changed the object between our read and our write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The object exists but its content cannot be used (bad JSON, weights not summing to 100, ...).
    #[error("invalid: {0}")]
    Invalid(String),
    /// A failure that may pass on retry (network, throttling, 5xx).
    #[error("transient: {0}")]
    Transient(String),
    /// A local I/O failure.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl BackendError {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BackendError::Conflict(_) | BackendError::Transient(_) | BackendError::Io { .. }
        )
    }
}

/// A place where the primary/DR split is written: one trait, one module per implementation.
#[async_trait]
pub trait TrafficBackend: Send + Sync {
    /// A one-line description for logs and reports, e.g. `file /run/checkout.json`.
    fn describe(&self) -> String;
    /// Reads the live split from the backend itself (never from a cache).
    async fn get_weights(&self) -> Result<Weights, BackendError>;
    /// Writes the split; the returned [`Applied`] may still be propagating. `note` (run id
    /// and stage, e.g. `run 7f3a stage 2/5`; may be empty) is recorded with the write where
    /// the backend can: a Route 53 change comment, an annotation on the object.
    async fn set_weights(&self, weights: Weights, note: &str) -> Result<Applied, BackendError>;
    /// Waits until an accepted change is in force (Route 53: INSYNC). Default: at once.
    async fn wait_applied(&self, _applied: &Applied) -> Result<(), BackendError> {
        Ok(())
    }
    /// Seconds a client may keep serving the old split after a change (DNS TTL); 0 if none.
    fn propagation_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Tells the people watching the routed object (a Kubernetes Event). Default: nothing.
    async fn announce(&self, _reason: &str, _note: &str, _warning: bool) {}
    /// The lock record of the routed object itself, where every controller that could touch
    /// it looks (see [`crate::lock`]). `None` only for in-memory backends of simulations; a real
    /// run refuses a backend without one.
    fn object_lock(&self) -> Option<std::sync::Arc<dyn ObjectLock>> {
        None
    }
}
