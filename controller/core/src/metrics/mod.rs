//! What a gate measures: the [`source::MetricSource`] port, the readings it returns, the
//! PromQL written for it and the counting of counters across resets.

pub mod counters;
pub mod promql;
pub mod source;
