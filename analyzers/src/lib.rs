//! Metric sources, gates and verdicts for `cutover`.
//!
//! * [`source::MetricSource`] — where numbers come from: [`prometheus::PrometheusSource`]
//!   or [`simulated::SimulatedSource`];
//! * [`gate`] — the policy's checks and their pure evaluation (no data is never a pass);
//! * [`verdict`] — from gate results to an analysis verdict and a stage verdict;
//! * [`analysis::Analyzer`] — takes one analysis (the only effectful part);
//! * [`preflight`] — what must hold before anything changes.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod analysis;
pub mod counters;
pub mod eprocess;
pub mod gate;
pub mod preflight;
pub mod prometheus;
pub mod promql;
pub mod serde_secs;
pub mod simulated;
pub mod source;
pub mod units;
pub mod verdict;

pub use analysis::{Analysis, Analyzer};
pub use gate::{Gate, GateResult, GateSpec, GateStatus};
pub use promql::{PromqlBuilder, Site, SitesSpec, TrafficSpec};
pub use source::{Measure, MetricError, MetricSource, Reading};
pub use units::{Percent, Span};
