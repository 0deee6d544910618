//! The pure decision core of `cutover`.
//!
//! Everything here decides; nothing here does I/O on the network. The compiler enforces it:
//! this crate depends on no async runtime, HTTP client, Kubernetes or AWS crate.
//!
//! * [`weights`] and [`units`] — the domain values: a split, a site, a percent, a duration;
//! * [`policy`] — the policy file: its model, loading, validation, and the typed [`policy::Plan`];
//! * [`metrics`] — what a gate measures ([`metrics::source::MetricSource`], the port a metric
//!   source implements) and how PromQL is written for it;
//! * [`judge`] — gates, e-processes and verdicts: from readings to "promote, hold or roll back";
//! * [`run`] — the run state machine, [`run::Run::step`]: an observation in, a request and
//!   events out; shared by real runs, the demo and the benchmark;
//! * the ports the adapters implement: [`traffic::TrafficBackend`], [`lock::ObjectLock`],
//!   [`store::StateStore`].
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod fleet;
pub mod judge;
pub mod lock;
pub mod metrics;
pub mod policy;
pub mod readiness;
pub mod run;
pub mod serde_secs;
pub mod store;
pub mod traffic;
pub mod units;
pub mod weights;

pub use judge::analysis::Analysis;
pub use judge::gate::{Gate, GateResult, GateSpec, GateStatus};
pub use metrics::promql::{PromqlBuilder, SitesSpec, TrafficSpec};
pub use metrics::source::{Measure, MetricError, MetricSource, Reading};
pub use traffic::{Applied, BackendError, TrafficBackend};
pub use units::{Percent, Span};
pub use weights::{Site, StageWeight, Weights};
