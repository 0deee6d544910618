//! Running readiness checks (`preflight:` and `guards:`): one file per kind, each behind
//! [`ReadinessCheck`]. A check never changes anything, is bounded by a timeout, and never
//! puts a secret (a connection string, a password) in what it reports.

use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cutover_core::judge::preflight::{PreflightCheck, PreflightResult};
use cutover_core::metrics::source::MetricSource;

pub mod cockroach;
pub mod http;
pub mod kubernetes_capacity;
pub mod patroni;
pub mod postgres;
pub mod query;

/// How long one check may take, whatever it is.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// What one check found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Finding {
    /// Whether it holds.
    pub ok: bool,
    /// The value judged, if any.
    pub value: Option<f64>,
    /// `kubernetes_capacity`: the percent of traffic the ready capacity covers.
    pub covers: Option<f64>,
    /// The value and the verdict in words.
    pub detail: String,
}

impl Finding {
    /// A failure, with why.
    pub fn fail(detail: impl Into<String>) -> Finding {
        Finding {
            detail: detail.into(),
            ..Finding::default()
        }
    }
}

/// One kind of readiness check.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// What is asked of which server, for the report: never a secret.
    fn asked(&self) -> String;
    /// Checks once; an unreachable server is a failure, never a pass.
    async fn check(&self, now: SystemTime) -> Finding;
}

/// The check of a policy entry.
pub fn check_of<'a>(
    source: &'a dyn MetricSource,
    c: &'a PreflightCheck,
) -> Box<dyn ReadinessCheck + 'a> {
    if let Some(pg) = &c.postgres {
        Box::new(postgres::Postgres(pg))
    } else if let Some(p) = &c.patroni {
        Box::new(patroni::Patroni(p))
    } else if let Some(cr) = &c.cockroach_pcr {
        Box::new(cockroach::Cockroach(cr))
    } else if let Some(k) = &c.kubernetes_capacity {
        Box::new(kubernetes_capacity::Capacity(k))
    } else if let Some(h) = &c.http {
        Box::new(http::Http(h))
    } else {
        Box::new(query::Query { source, check: c })
    }
}

/// Runs one check under [`CHECK_TIMEOUT`].
pub async fn run_check(
    source: &dyn MetricSource,
    c: &PreflightCheck,
    now: SystemTime,
) -> PreflightResult {
    let check = check_of(source, c);
    let f = match tokio::time::timeout(CHECK_TIMEOUT, check.check(now)).await {
        Ok(f) => f,
        Err(_) => Finding::fail(format!(
            "no answer within {}s; an unanswered check never holds",
            CHECK_TIMEOUT.as_secs()
        )),
    };
    let r = PreflightResult {
        name: c.name.clone(),
        query: check.asked(),
        ok: f.ok,
        detail: f.detail,
        kind: c.kind().into(),
        value: f.value,
        covers: f.covers,
    };
    if r.ok {
        tracing::debug!(check = %r.name, kind = %r.kind, detail = %r.detail, "readiness check holds");
    } else {
        tracing::info!(check = %r.name, kind = %r.kind, detail = %r.detail, "readiness check does not hold");
    }
    r
}

/// Runs every check, concurrently.
pub async fn run_checks(
    source: &dyn MetricSource,
    checks: &[PreflightCheck],
    now: SystemTime,
) -> Vec<PreflightResult> {
    let mut set = Vec::new();
    for c in checks {
        set.push(run_check(source, c, now));
    }
    join_all(set).await
}

/// Awaits every future, concurrently, in order.
async fn join_all<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut fs: Vec<_> = fs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = fs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in fs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Reads a secret (a connection string) from its file: trimmed, never logged. The error
/// names the file, not its content.
pub fn read_secret(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => Err(format!("{} is empty", path.display())),
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// A URL as it may be shown (its password, if any, as `***`) and the password, to redact
/// from errors.
pub fn shown_url(u: &str) -> (String, Option<String>) {
    match reqwest::Url::parse(u) {
        Ok(mut url) => match url.password().map(str::to_string) {
            Some(p) => {
                let _ = url.set_password(Some("***"));
                (url.to_string(), Some(p))
            }
            None => (u.to_string(), None),
        },
        Err(_) => (u.to_string(), None),
    }
}

/// `text` with every occurrence of each secret replaced by `***`: errors of clients may
/// quote what they were given.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut t = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        t = t.replace(s, "***");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_never_shown() {
        let (shown, secret) = shown_url("https://ops:hunter22@patroni.example:8008");
        assert_eq!(shown, "https://ops:***@patroni.example:8008/");
        assert_eq!(secret.as_deref(), Some("hunter22"));
        assert_eq!(
            redact(
                "error sending request for url (https://ops:hunter22@x/)",
                &["hunter22"]
            ),
            "error sending request for url (https://ops:***@x/)"
        );
        assert_eq!(shown_url("http://x/healthz").1, None);
    }
}
