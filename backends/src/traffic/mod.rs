//! The traffic backends, implementations of [`cutover_core::TrafficBackend`]: one file
//! per kind of routed object, plus what the two Kubernetes kinds share.

pub mod file;
pub mod gateway_api;
pub mod istio;
pub mod k8s;
pub mod route53;
