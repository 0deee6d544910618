//! Readiness of the primary: the kinds of `preflight:` and `guards:` check beyond PromQL
//! (a database's replication, the primary's capacity, a smoke request), and the pure
//! decisions made from their results: may the run start (or must it wait), may a stage's
//! weight be written, must the run hold.
//!
//! A check's I/O lives in `cutover-analyzers` (`readiness/`); here are only its model, its
//! validation and what a result means. A check gives one [`PreflightResult`]: pass or fail,
//! a value and a reason in words, and for `kubernetes_capacity` the share of traffic the
//! primary's ready capacity covers.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::judge::preflight::{PreflightCheck, PreflightResult};
use crate::units::Span;

pub mod validate;

/// `postgres`: PostgreSQL streaming replication between the DR writer and the
/// primary-to-be.
///
/// What lag means here: during a failback the primary site's database is a standby being
/// caught up from DR's writer. On the primary-to-be (`primary_connection_file`), a server in
/// recovery is behind by `now() - pg_last_xact_replay_timestamp()` while it has received WAL
/// it has not replayed (`pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()`), and by
/// nothing once it has replayed all it received (an idle writer sends no transactions, so
/// the age of the last replayed one is no lag); a server not in recovery is a writer already
/// and has nothing to catch up. On the DR writer (`dr_connection_file`), `pg_stat_replication`
/// must list a `streaming` standby; its lag is `replay_lag` and its bytes behind
/// `pg_current_wal_lsn() - replay_lsn` (the lag of the standby that is most caught up, when
/// several stream). With both connections the larger lag counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresCheck {
    /// A file holding the connection string (`host=… user=… password=…` or
    /// `postgresql://…`) of the primary site's database: a mounted Secret. Read at every
    /// check (rotation works); never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_connection_file: Option<PathBuf>,
    /// A file holding the connection string of DR's writer (the server standbys stream from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dr_connection_file: Option<PathBuf>,
    /// The most replay lag acceptable, e.g. `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag: Option<Span>,
    /// The most WAL bytes the primary-to-be may be behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_bytes: Option<u64>,
    /// A PEM file of the CA(s) that sign the servers' certificates; with `sslmode=require` in
    /// the connection string the connection uses TLS (rustls), verified against it (else
    /// against the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// `patroni`: a Patroni cluster's REST API, `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatroniCheck {
    /// The REST API's base URL, e.g. `http://patroni.primary:8008`.
    pub url: String,
    /// A regular expression the leader's (or standby leader's) member name must match: the
    /// leader is on the expected site, e.g. `^pg-primary-`. Default: any leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// A regular expression naming the replicas that must be caught up. Default: every
    /// member that is not the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<String>,
    /// The most replication lag (Patroni's `lag`, in bytes of WAL) a replica may have;
    /// `unknown` lag is a failure.
    pub max_lag_bytes: u64,
    /// How long the request may take. Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
}

/// `cockroach_pcr`: CockroachDB physical cluster replication, read with
/// `SHOW VIRTUAL CLUSTER <name> WITH REPLICATION STATUS` on the standby (primary-to-be)
/// cluster over the PostgreSQL wire protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CockroachCheck {
    /// A file holding the connection string of the standby cluster's system virtual cluster.
    pub connection_file: PathBuf,
    /// The replicating virtual cluster's name, e.g. `main`.
    pub virtual_cluster: String,
    /// The most lag acceptable: now minus `replicated_time`.
    pub max_lag: Span,
    /// A PEM file of the CA(s) of the cluster's certificates (see `postgres.ca_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Deployments of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteDeployments {
    /// Their namespace.
    pub namespace: String,
    /// Their names; their ready replicas are added up.
    pub deployments: Vec<String>,
    /// The kubeconfig context of the site's cluster. Default: the current one (in a pod,
    /// its own cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// `kubernetes_capacity`: the primary's ready replicas against DR's (or an absolute number).
/// A stage's weight `w` is written only when `primary ready / DR ready >= w/100 × headroom`
/// (or `primary ready / replicas`); until then the stage waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityCheck {
    /// The primary site's Deployments.
    pub primary: SiteDeployments,
    /// DR's Deployments: the capacity that serves all traffic now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dr: Option<SiteDeployments>,
    /// Or: the ready replicas that serve all traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Capacity needed per unit of traffic, at least 1: `1.2` asks for 20 % spare. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<f64>,
}

/// `http`: a smoke request, as a runbook's `verify_services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// The URL.
    pub url: String,
    /// The method. Default `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The status expected. Default 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// A regular expression the body must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// How long the request may take. Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
}

/// What a failing guard does once it has failed for `guard_failure_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnGuardFailure {
    /// End the run with traffic held at its weight, exit 5.
    #[default]
    Hold,
    /// Put all traffic back on DR, exit 1.
    Rollback,
}

/// The readiness part of a plan: preflight checks (with their waits) and guards.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Readiness {
    /// `preflight:`, as written.
    pub preflight: Vec<PreflightCheck>,
    /// `guards:`, re-checked at every analysis.
    pub guards: Vec<PreflightCheck>,
    /// `on_guard_failure`.
    pub on_guard_failure: OnGuardFailure,
    /// `guard_failure_limit`.
    pub guard_failure_limit: Duration,
}

impl Readiness {
    /// Every file a check reads (connection strings, CA bundles), in order, once each: what
    /// a Job must mount from Secrets.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for c in self.preflight.iter().chain(&self.guards) {
            let mut add = |f: &Option<PathBuf>| {
                if let Some(f) = f
                    && !out.contains(f)
                {
                    out.push(f.clone());
                }
            };
            if let Some(pg) = &c.postgres {
                add(&pg.primary_connection_file);
                add(&pg.dr_connection_file);
                add(&pg.ca_file);
            }
            if let Some(cr) = &c.cockroach_pcr {
                add(&Some(cr.connection_file.clone()));
                add(&cr.ca_file);
            }
        }
        out
    }

    /// The Deployments `kubernetes_capacity` reads in the Job's own cluster (a site with no
    /// `context`): (namespace, name), once each.
    pub fn deployments(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for k in self
            .preflight
            .iter()
            .chain(&self.guards)
            .filter_map(|c| c.kubernetes_capacity.as_ref())
        {
            for site in std::iter::once(&k.primary).chain(k.dr.as_ref()) {
                if site.context.is_some() {
                    continue;
                }
                for d in &site.deployments {
                    let key = (site.namespace.clone(), d.clone());
                    if !out.contains(&key) {
                        out.push(key);
                    }
                }
            }
        }
        out
    }
}

/// How often a waiting check is polled unless it says: `10s`.
pub const DEFAULT_POLL: Duration = Duration::from_secs(10);

impl PreflightCheck {
    /// The check's kind, for logs, metrics and errors.
    pub fn kind(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else if self.patroni.is_some() {
            "patroni"
        } else if self.cockroach_pcr.is_some() {
            "cockroach_pcr"
        } else if self.kubernetes_capacity.is_some() {
            "kubernetes_capacity"
        } else if self.http.is_some() {
            "http"
        } else {
            "query"
        }
    }

    /// How long preflight may wait for it to hold.
    pub fn wait(&self) -> Duration {
        self.wait.map(Span::get).unwrap_or_default()
    }

    /// How often it is polled while waiting.
    pub fn poll(&self) -> Duration {
        self.interval.map(Span::get).unwrap_or(DEFAULT_POLL)
    }
}

/// A check in words for `cutover plan`: what it asks of which server, its limits and its
/// wait. Names files, never reads them: no secret can appear.
pub fn describe(c: &PreflightCheck) -> String {
    let file = |f: &Option<PathBuf>| f.as_ref().map(|f| f.display().to_string());
    let mut s = match (
        &c.postgres,
        &c.patroni,
        &c.cockroach_pcr,
        &c.kubernetes_capacity,
        &c.http,
    ) {
        (Some(pg), ..) => {
            let mut parts = Vec::new();
            if let Some(f) = file(&pg.primary_connection_file) {
                parts.push(format!("primary-to-be replay lag (connection in {f})"));
            }
            if let Some(f) = file(&pg.dr_connection_file) {
                parts.push(format!(
                    "DR writer's pg_stat_replication (connection in {f})"
                ));
            }
            let lag = pg
                .max_lag
                .map(|l| format!(" max_lag {l}"))
                .unwrap_or_default();
            let bytes = pg
                .max_lag_bytes
                .map(|b| format!(" max_lag_bytes {b}"))
                .unwrap_or_default();
            format!("postgres {};{lag}{bytes}", parts.join(", "))
        }
        (_, Some(p), ..) => format!(
            "patroni GET {}/cluster: leader /{}/, replicas /{}/ within {} bytes",
            p.url.trim_end_matches('/'),
            p.leader.as_deref().unwrap_or(".*"),
            p.members.as_deref().unwrap_or(".*"),
            p.max_lag_bytes
        ),
        (_, _, Some(cr), ..) => format!(
            "cockroach_pcr SHOW VIRTUAL CLUSTER {} WITH REPLICATION STATUS (connection in {}): replicating, lag within {}",
            cr.virtual_cluster,
            cr.connection_file.display(),
            cr.max_lag
        ),
        (_, _, _, Some(k), _) => format!(
            "kubernetes_capacity Deployments {}/{} against {} at headroom {}: no stage weight above the share they cover",
            k.primary.namespace,
            k.primary.deployments.join(","),
            match (&k.dr, k.replicas) {
                (Some(d), _) => format!("DR's {}/{}", d.namespace, d.deployments.join(",")),
                (None, n) => format!("{} replicas", n.unwrap_or_default()),
            },
            k.headroom.unwrap_or(1.0)
        ),
        (_, _, _, _, Some(h)) => format!(
            "http {} {} expecting {}{}",
            h.method.as_deref().unwrap_or("GET"),
            h.url,
            h.status.unwrap_or(200),
            h.body
                .as_ref()
                .map(|b| format!(" and a body matching /{b}/"))
                .unwrap_or_default()
        ),
        _ => format!("query {}", c.query.as_deref().unwrap_or_default()),
    };
    if let Some(w) = c.wait {
        s.push_str(&format!(
            "; waits up to {w}, checking every {}",
            fmt_span(c.poll())
        ));
    }
    s
}

fn fmt_span(d: Duration) -> String {
    Span(d).to_string()
}

/// Whether a result allows writing `weight` percent to the primary: it passed, and a
/// capacity result covers the weight.
pub fn allows(r: &PreflightResult, weight: u8) -> bool {
    r.ok && r.covers.is_none_or(|c| c + 1e-9 >= f64::from(weight))
}

/// Why results do not allow `weight`, in words; `None` when they do.
pub fn blocking(results: &[PreflightResult], weight: u8) -> Option<String> {
    let why: Vec<String> = results
        .iter()
        .filter(|r| !allows(r, weight))
        .map(|r| match r.covers {
            Some(c) if r.ok => format!(
                "{} ({}): ready capacity covers {c:.0}% of traffic, the {weight}% stage needs more",
                r.name, r.kind
            ),
            _ => format!("{} ({}): {}", r.name, r.kind, r.detail),
        })
        .collect();
    (!why.is_empty()).then(|| why.join("; "))
}

/// How the guards' results are named when they are checked with preflight (before the
/// first write): `guard <name>`.
pub const GUARD_PREFIX: &str = "guard ";

/// Preflight's decision on results that do not all hold: how long to sleep before checking
/// again, or `None` when some failing check has no wait left (or none at all). `since` is
/// when preflight began. A result matches its preflight check by name; a guard's (named
/// [`GUARD_PREFIX`] + its name) waits as long as the longest preflight wait (a guard that
/// watches the same lag as a waiting preflight check must not cut the wait short); results
/// of no check (the gates' data checks) never wait.
pub fn preflight_retry(
    readiness: &Readiness,
    results: &[PreflightResult],
    first_weight: u8,
    since: SystemTime,
    now: SystemTime,
) -> Option<Duration> {
    let waited = now.duration_since(since).unwrap_or_default();
    let longest = readiness.preflight.iter().max_by_key(|c| c.wait());
    let mut sleep: Option<Duration> = None;
    for r in results.iter().filter(|r| !allows(r, first_weight)) {
        let own = readiness.preflight.iter().find(|c| c.name == r.name);
        let guard = r
            .name
            .strip_prefix(GUARD_PREFIX)
            .and_then(|n| readiness.guards.iter().find(|g| g.name == n));
        let c = match (own, guard) {
            (Some(c), _) => c,
            (None, Some(_)) => longest?,
            (None, None) => return None,
        };
        let left = c.wait().checked_sub(waited).filter(|d| !d.is_zero())?;
        let s = c.poll().min(left);
        sleep = Some(sleep.map_or(s, |x| x.min(s)));
    }
    sleep
}

#[cfg(test)]
mod tests;
