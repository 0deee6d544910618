//! Preflight: what must hold before any weight changes.
//!
//! The policy's own checks (e.g. replication lag below 60 s) must each return one number
//! within bounds, the metric source must answer, and every gate's query must return data
//! for the DR site — a gate that cannot see DR now will not see the primary later — and
//! must run for the primary (no data is expected there yet, but a query the source refuses,
//! e.g. a label value it cannot parse, would otherwise show only after traffic moved).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::readiness::{CapacityCheck, CockroachCheck, HttpCheck, PatroniCheck, PostgresCheck};
use crate::units::Span;

/// One `preflight:` (or `guards:`) check of a policy: exactly one of `query`, `postgres`,
/// `patroni`, `cockroach_pcr`, `kubernetes_capacity`, `http`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightCheck {
    /// A name for logs and reports, unique in its list.
    pub name: String,
    /// PromQL returning one number; `{{service}}` is replaced by the service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The lowest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The highest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// PostgreSQL streaming replication: see [`PostgresCheck`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresCheck>,
    /// A Patroni cluster's members: see [`PatroniCheck`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patroni: Option<PatroniCheck>,
    /// CockroachDB physical cluster replication: see [`CockroachCheck`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cockroach_pcr: Option<CockroachCheck>,
    /// The primary's ready capacity: see [`CapacityCheck`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_capacity: Option<CapacityCheck>,
    /// A smoke request: see [`HttpCheck`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// Preflight only: how long to keep checking until it holds (the runbook's "wait for
    /// sync, timeout 30 minutes"); preflight fails (exit 3) only once it is over. Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Span>,
    /// How often to check again while waiting. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Span>,
}

/// The result of one preflight check (or guard).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PreflightResult {
    /// What was checked.
    pub name: String,
    /// The query run, or what was asked of which server (never a secret).
    pub query: String,
    /// Whether it held.
    pub ok: bool,
    /// The value, or why there is none, and the verdict in words.
    pub detail: String,
    /// The check's kind (`query`, `postgres`, …).
    #[serde(default)]
    pub kind: String,
    /// The value judged (a lag in seconds, a capacity ratio, a status code), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// `kubernetes_capacity`: the percent of traffic the primary's ready capacity covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers: Option<f64>,
}
