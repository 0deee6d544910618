//! Traffic backends for `cutover`: the places where the split between the primary
//! site and the DR site is written.
//!
//! One trait, [`TrafficBackend`], and one module per implementation. The controller
//! knows only the trait; it never sees a Kubernetes client or an AWS SDK type.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod file;
pub mod gateway_api;
pub mod istio;
pub mod k8s;
pub mod k8s_lock;
pub mod k8s_state;
pub mod lock;
pub mod route53;
pub mod route53_lock;
pub mod spec;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use file::{FileBackend, FileBackendConfig};
pub use spec::{BackendKind, BackendSpec};

/// The split of traffic between the two sites, in whole percent; always sums to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Weights {
    /// Percent of traffic sent to the primary site (the site coming back).
    pub primary: u8,
    /// Percent of traffic sent to the DR site (the site serving now).
    pub dr: u8,
}

impl Weights {
    /// All traffic on the DR site: where a failback starts and where a rollback ends.
    pub const ALL_DR: Weights = Weights {
        primary: 0,
        dr: 100,
    };

    /// The split that sends `primary` percent to the primary site and the rest to DR.
    ///
    /// Values above 100 are an error, never clamped: a wrong weight must not reach traffic.
    pub fn primary(primary: u8) -> Result<Weights, BackendError> {
        if primary > 100 {
            return Err(BackendError::Invalid(format!(
                "primary weight {primary} is above 100; weights are percent of traffic"
            )));
        }
        Ok(Weights {
            primary,
            dr: 100 - primary,
        })
    }

    /// Checks that the two weights sum to 100.
    pub fn validate(&self) -> Result<(), BackendError> {
        if u16::from(self.primary) + u16::from(self.dr) != 100 {
            return Err(BackendError::Invalid(format!(
                "weights primary={} dr={} do not sum to 100",
                self.primary, self.dr
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "primary {}% / dr {}%", self.primary, self.dr)
    }
}

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
    /// Writes the split; the returned [`Applied`] may still be propagating.
    async fn set_weights(&self, weights: Weights) -> Result<Applied, BackendError>;
    /// Waits until an accepted change is in force (Route 53: INSYNC). Default: at once.
    async fn wait_applied(&self, _applied: &Applied) -> Result<(), BackendError> {
        Ok(())
    }
    /// Seconds a client may keep serving the old split after a change (DNS TTL); 0 if none.
    fn propagation_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// A note (run id, stage) to record with the next write, where the backend can
    /// (a Route 53 change comment, an annotation). Default: ignored.
    fn note(&self, _note: String) {}
    /// Tells the people watching the routed object (a Kubernetes Event). Default: nothing.
    async fn announce(&self, _reason: &str, _note: &str, _warning: bool) {}
    /// The lock record of the routed object itself, where every controller that could touch
    /// it looks (see [`lock`]). `None` only for in-memory backends of simulations; a real
    /// run refuses a backend without one.
    fn object_lock(&self) -> Option<std::sync::Arc<dyn lock::ObjectLock>> {
        None
    }
}

/// Options of connecting to a backend that do not belong in a policy.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// A kubeconfig file (Kubernetes backends); default: in-cluster, then `~/.kube/config`.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// A kubeconfig context.
    pub context: Option<String>,
    /// An AWS endpoint override (emulators).
    pub aws_endpoint_url: Option<String>,
}

/// Connects to the backend a policy names: the factory that picks one implementation.
pub async fn connect(
    spec: &BackendSpec,
    options: &ConnectOptions,
) -> Result<std::sync::Arc<dyn TrafficBackend>, BackendError> {
    match spec.kind().map_err(BackendError::Invalid)? {
        BackendKind::File => {
            let cfg = spec.file.as_ref().expect("kind() checked");
            Ok(std::sync::Arc::new(FileBackend::new(cfg)))
        }
        BackendKind::Route53 => {
            let cfg = spec.route53.as_ref().expect("kind() checked");
            let b =
                route53::Route53Backend::connect(cfg, options.aws_endpoint_url.as_deref()).await?;
            Ok(std::sync::Arc::new(b))
        }
        BackendKind::Istio => {
            let cfg = spec.istio.as_ref().expect("kind() checked");
            Ok(std::sync::Arc::new(istio::connect(cfg, options).await?))
        }
        BackendKind::GatewayApi => {
            let cfg = spec.gateway_api.as_ref().expect("kind() checked");
            Ok(std::sync::Arc::new(
                gateway_api::connect(cfg, options).await?,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_from_primary() {
        assert_eq!(
            Weights::primary(25).unwrap(),
            Weights {
                primary: 25,
                dr: 75
            }
        );
        assert!(Weights::primary(101).is_err());
        assert!(
            Weights {
                primary: 50,
                dr: 40
            }
            .validate()
            .is_err()
        );
        assert_eq!(Weights::ALL_DR.to_string(), "primary 0% / dr 100%");
    }
}
