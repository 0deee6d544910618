//! Whole-site failback: runs a fleet's schedule ([`cutover_core::fleet::Fleet`]) with an
//! [`Executor`] that runs each service's cutover — [`local::LocalExecutor`] as child
//! processes on this machine, [`kubernetes::KubernetesExecutor`] as one Job each — persisting the fleet's state after every change so a
//! restarted orchestrator resumes; and the fleet's plan (worst case, query load) and its
//! export as an Argo Workflow.

pub mod argo;
pub mod driver;
pub mod executor;
pub mod kubernetes;
pub mod local;
pub mod plan;
pub mod store;
pub mod watch;

pub use executor::{Ended, Executor};
