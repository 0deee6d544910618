//! The [`MetricSource`] trait: where measurements come from (Prometheus, or the simulator).

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::weights::Site;

/// One measurement a gate, the settling phase or a preflight check asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Requests per second at a site over a window.
    RequestRate {
        /// The site.
        site: Site,
        /// The look-back window.
        window: Duration,
    },
    /// Requests served by a site over a window.
    RequestCount {
        /// The site.
        site: Site,
        /// The look-back window.
        window: Duration,
    },
    /// Errors divided by requests at a site over a window.
    ErrorRatio {
        /// The site.
        site: Site,
        /// The look-back window.
        window: Duration,
    },
    /// A latency quantile, in seconds, at a site over a window.
    LatencyQuantile {
        /// The quantile, in (0, 1).
        quantile: f64,
        /// The site.
        site: Site,
        /// The look-back window.
        window: Duration,
    },
    /// The share of a site's requests that are bad (errors, or slower than a bucket edge),
    /// over a window: what a sequential gate counts, as one number (plans, preflight).
    BadShare {
        /// What is bad.
        counted: Counted,
        /// The site.
        site: Site,
        /// The look-back window.
        window: Duration,
    },
    /// A policy's own PromQL template; `site` fills `{{site}}` when given.
    Custom {
        /// The template, with `{{site}}`/`{{service}}` placeholders.
        template: String,
        /// The site whose label value fills `{{site}}`; `None` for site-less queries.
        site: Option<Site>,
    },
}

/// What a sequential gate counts as a bad request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counted {
    /// Requests matching `traffic.errors`.
    Errors,
    /// Requests slower than this histogram bucket edge, in seconds.
    SlowerThan(f64),
}

/// Counts of one site's requests over `(from, now]`, from raw counter samples.
#[derive(Debug, Clone, PartialEq)]
pub struct CountQuery {
    /// What is bad.
    pub counted: Counted,
    /// The site.
    pub site: Site,
    /// The start of the interval (exclusive); the end is the time of the measurement.
    pub from: SystemTime,
}

/// A site's requests and bad requests over an interval (see [`crate::metrics::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests.
    pub total: f64,
    /// Bad requests among them.
    pub bad: f64,
    /// Counter resets seen.
    #[serde(default)]
    pub resets: u32,
}

/// The outcome of a count, as kept in an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum CountReading {
    /// The counts.
    Counted(Counts),
    /// Counting failed.
    Error(String),
}

impl From<Result<Counts, MetricError>> for CountReading {
    fn from(r: Result<Counts, MetricError>) -> CountReading {
        match r {
            Ok(c) => CountReading::Counted(c),
            Err(e) => CountReading::Error(e.to_string()),
        }
    }
}

/// What a query returned: one number, or nothing at all (an empty vector).
///
/// A number may be NaN or infinite (`0/0`, `x/0`); gates treat those as no data.
pub type Sample = Option<f64>;

/// Why a measurement could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// The source could not be reached (connection refused, timeout, TLS).
    #[error("cannot reach {source_name}: {message}")]
    Unreachable {
        /// The source, e.g. `prometheus http://127.0.0.1:9090`.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The source answered with an error (bad PromQL, HTTP 4xx/5xx).
    #[error("{source_name} refused `{query}`: {message}")]
    Refused {
        /// The source.
        source_name: String,
        /// The query sent.
        query: String,
        /// What the source said.
        message: String,
    },
    /// The source answered with an HTTP error status instead of an API answer: it is
    /// reachable, but refuses (credentials) or fails (a server or proxy error).
    #[error("{source_name} answered HTTP {status}: {meaning}")]
    HttpStatus {
        /// The source.
        source_name: String,
        /// The status code and reason, e.g. `401 Unauthorized`.
        status: String,
        /// What it means and what to check.
        meaning: String,
    },
    /// The answer is not one number (several series, a matrix).
    #[error(
        "`{query}` returned {found}; a gate query must return one number, e.g. wrap it in sum() or max()"
    )]
    NotOneNumber {
        /// The query sent.
        query: String,
        /// What came back instead.
        found: String,
    },
    /// The source cannot answer this kind of measurement.
    #[error("{0}")]
    Unsupported(String),
}

/// Where measurements come from: one trait, one file per implementation.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// A one-line description for logs, e.g. `prometheus http://prometheus:9090`.
    fn describe(&self) -> String;
    /// The query text this source runs for a measurement (PromQL), for plans and reports.
    fn render(&self, measure: &Measure) -> String;
    /// How long one query may take, if the source has a limit; an analysis runs its
    /// queries concurrently and waits at most this long (or its interval, if shorter).
    fn query_timeout(&self) -> Option<Duration> {
        None
    }
    /// Takes a measurement as of `now`.
    async fn measure(&self, measure: &Measure, now: SystemTime) -> Result<Sample, MetricError>;
    /// Counts a site's requests and bad requests over `(query.from, now]` from raw counter
    /// samples, handling resets and gaps (sequential gates).
    async fn count(&self, query: &CountQuery, now: SystemTime) -> Result<Counts, MetricError> {
        let _ = (query, now);
        Err(MetricError::Unsupported(format!(
            "{} cannot count requests; sequential gates need Prometheus or the simulator",
            self.describe()
        )))
    }
}

/// The outcome of one measurement, as kept in an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Reading {
    /// One number (finite or not).
    Value(f64),
    /// An empty result: no series matched.
    Empty,
    /// The query failed.
    Error(String),
}

impl Reading {
    /// The number, if it is a finite one.
    pub fn finite(&self) -> Option<f64> {
        match self {
            Reading::Value(v) if v.is_finite() => Some(*v),
            _ => None,
        }
    }

    /// Whether the query failed.
    pub fn is_error(&self) -> bool {
        matches!(self, Reading::Error(_))
    }
}

impl From<Result<Sample, MetricError>> for Reading {
    fn from(r: Result<Sample, MetricError>) -> Reading {
        match r {
            Ok(Some(v)) => Reading::Value(v),
            Ok(None) => Reading::Empty,
            Err(e) => Reading::Error(e.to_string()),
        }
    }
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reading::Value(v) => write!(f, "{v}"),
            Reading::Empty => f.write_str("no data"),
            Reading::Error(e) => write!(f, "error: {e}"),
        }
    }
}
