//! Metric-source adapters and the effectful half of judging, for `cutover`.
//!
//! The gates, e-processes and verdicts are pure and live in `cutover-core`; this crate
//! measures:
//! * [`prometheus::PrometheusSource`] and [`simulated::SimulatedSource`] — the two
//!   implementations of [`cutover_core::MetricSource`];
//! * [`analysis::Analyzer`] — takes one analysis, every query concurrently under one deadline;
//! * [`preflight::run_preflight`] — what must hold before anything changes.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod analysis;
pub mod preflight;
pub mod prometheus;
pub mod readiness;
pub mod simulated;

pub use analysis::Analyzer;
