//! Traffic backends for `cutover`: the places where the split between the primary
//! site and the DR site is written, the lock of each routed object, and the run-state stores.
//!
//! Each implements a port of `cutover-core` ([`cutover_core::TrafficBackend`],
//! [`cutover_core::lock::ObjectLock`]); the controller knows only the ports and
//! [`connect`], and never sees a Kubernetes client or an AWS SDK type.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

mod kube_api;
pub mod lock;
pub mod objects;
pub mod state;
pub mod traffic;

use std::sync::Arc;

use cutover_core::policy::backend::Backend;
use cutover_core::{BackendError, TrafficBackend};

pub use traffic::file::FileBackend;

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
    backend: &Backend,
    options: &ConnectOptions,
) -> Result<Arc<dyn TrafficBackend>, BackendError> {
    Ok(match backend {
        Backend::File(cfg) => Arc::new(FileBackend::new(cfg)),
        Backend::Route53(cfg) => Arc::new(
            traffic::route53::Route53Backend::connect(cfg, options.aws_endpoint_url.as_deref())
                .await?,
        ),
        Backend::Istio(cfg) => Arc::new(traffic::istio::connect(cfg, options).await?),
        Backend::GatewayApi(cfg) => Arc::new(traffic::gateway_api::connect(cfg, options).await?),
    })
}
