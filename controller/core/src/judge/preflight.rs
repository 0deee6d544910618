//! Preflight: what must hold before any weight changes.
//!
//! The policy's own checks (e.g. replication lag below 60 s) must each return one number
//! within bounds, the metric source must answer, and every gate's query must return data
//! for the DR site — a gate that cannot see DR now will not see the primary later — and
//! must run for the primary (no data is expected there yet, but a query the source refuses,
//! e.g. a label value it cannot parse, would otherwise show only after traffic moved).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One `preflight:` check of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightCheck {
    /// A name for logs and reports.
    pub name: String,
    /// PromQL returning one number; `{{service}}` is replaced by the service name.
    pub query: String,
    /// The lowest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The highest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// The result of one preflight check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreflightResult {
    /// What was checked.
    pub name: String,
    /// The query run.
    pub query: String,
    /// Whether it held.
    pub ok: bool,
    /// The value, or why there is none, and the verdict in words.
    pub detail: String,
}
