//! The run-state stores, implementations of [`cutover_core::store::StateStore`]: a JSON
//! file for local runs ([`FileStore`]) and a ConfigMap for Jobs ([`ConfigMapStore`]).

pub mod configmap;
pub mod file;

pub use configmap::{ConfigMapBlob, ConfigMapStore};
pub use file::FileStore;
