//! [`MetricSource`] on a real Prometheus server, through `prometheus-http-query`.
//!
//! Gate queries are instant queries evaluated at the server's "now" (so a clock skew between
//! the controller and Prometheus cannot make a query look into the future and come back
//! empty). Sequential gates' counts are instant range-vector queries evaluated at the
//! controller's time, so that consecutive intervals partition time exactly (see
//! [`cutover_core::metrics::counters`]); a skew then loses whole scrapes at an interval's edge, never counts
//! one twice.
//! Each query has a timeout; bearer tokens and basic-auth passwords are read from files on
//! every query (so a rotated token is picked up) and are never logged.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use prometheus_http_query::{Client, Error as PromError, response::Data};

use cutover_core::metrics::counters::{
    Growth, MAX_GAP, first_seen_in, pair_growth, series_growth, with_births,
};
use cutover_core::metrics::promql::{
    PromqlBuilder, escape_label_value, parse_le, promql_duration, regex_any_of,
};
use cutover_core::metrics::source::{
    CountQuery, Counted, Counts, Measure, MetricError, MetricSource, Sample,
};
use cutover_core::policy::prometheus::{BasicAuth, PrometheusConfig, redact_url};

/// How far before an interval counting looks for each series' previous sample: the longest
/// gap counted across ([`MAX_GAP`], Prometheus' 5-minute look-back delta).
const LOOKBACK: Duration = Duration::from_secs(MAX_GAP as u64);

/// One series of a range query.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels, sorted.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `(unix seconds, value)` in time order.
    pub samples: Vec<(f64, f64)>,
}

/// Measurements from a Prometheus server.
pub struct PrometheusSource {
    client: Client,
    url: String,
    timeout: Duration,
    promql: PromqlBuilder,
    bearer_token_file: Option<PathBuf>,
    basic_auth: Option<BasicAuth>,
}

impl PrometheusSource {
    /// Builds the HTTP client (rustls, optional CA bundle) for `config`.
    pub fn new(
        config: &PrometheusConfig,
        promql: PromqlBuilder,
    ) -> Result<PrometheusSource, String> {
        let timeout = config.timeout.get();
        let mut http = reqwest::Client::builder()
            .timeout(timeout + Duration::from_secs(1))
            .connect_timeout(timeout.min(Duration::from_secs(5)));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("prometheus.ca_file: cannot read {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "prometheus.ca_file: {} is not a PEM bundle: {e}",
                    ca.display()
                )
            })?;
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        if config.insecure_skip_verify {
            http = http.danger_accept_invalid_certs(true);
        }
        let http = http
            .build()
            .map_err(|e| format!("prometheus: cannot build an HTTP client: {e}"))?;
        let client = Client::from(http, &config.url).map_err(|e| {
            format!(
                "prometheus.url: `{}` is not a usable URL ({e}); write e.g. http://prometheus:9090",
                redact_url(&config.url)
            )
        })?;
        Ok(PrometheusSource {
            client,
            url: redact_url(&config.url),
            timeout,
            promql,
            bearer_token_file: config.bearer_token_file.clone(),
            basic_auth: config.basic_auth.clone(),
        })
    }

    fn auth_header(&self) -> Result<Option<reqwest::header::HeaderValue>, MetricError> {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| MetricError::Unreachable {
                    source_name: self.describe(),
                    message: format!("cannot read {what} {}: {e}", p.display()),
                })
        };
        let header = |h: String| {
            reqwest::header::HeaderValue::from_str(&h)
                .map(Some)
                .map_err(|_| {
                    MetricError::Unsupported(
                        "the credential file holds characters not allowed in an HTTP header".into(),
                    )
                })
        };
        if let Some(p) = &self.bearer_token_file {
            return header(format!("Bearer {}", read(p, "bearer_token_file")?));
        }
        if let Some(b) = &self.basic_auth {
            let password = read(&b.password_file, "basic_auth.password_file")?;
            return header(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{password}", b.username))
            ));
        }
        Ok(None)
    }

    /// Runs a range query and returns each series' labels and `(unix seconds, value)` samples,
    /// e.g. raw counter samples to difference (sequential gates count, they do not rate).
    pub async fn query_range(
        &self,
        promql: &str,
        start: i64,
        end: i64,
        step: Duration,
    ) -> Result<Vec<Series>, MetricError> {
        let mut q = self
            .client
            .query_range(promql, start, end, step.as_secs_f64())
            .timeout(self.timeout.as_millis() as i64);
        if let Some(value) = self.auth_header()? {
            q = q.header(reqwest::header::AUTHORIZATION, value);
        }
        let result = q.get().await.map_err(|e| self.map_error(promql, e))?;
        match result.data() {
            Data::Matrix(m) => Ok(series_of(m)),
            Data::Vector(v) if v.is_empty() => Ok(Vec::new()),
            other => Err(MetricError::NotOneNumber {
                query: promql.to_string(),
                found: format!(
                    "{} instead of a range vector",
                    match other {
                        Data::Vector(_) => "an instant vector",
                        _ => "a scalar",
                    }
                ),
            }),
        }
    }

    /// Runs an instant query of a range-vector selector at `at` (unix seconds) and returns
    /// each series' raw samples: what counting differences.
    pub async fn query_raw(
        &self,
        selector: &str,
        range: Duration,
        at: f64,
    ) -> Result<Vec<Series>, MetricError> {
        let promql = format!("{selector}[{}]", promql_duration(range));
        let mut q = self
            .client
            .query(&promql)
            .query("time", format!("{at:.3}"))
            .timeout(self.timeout.as_millis() as i64);
        if let Some(value) = self.auth_header()? {
            q = q.header(reqwest::header::AUTHORIZATION, value);
        }
        let result = q.get().await.map_err(|e| self.map_error(&promql, e))?;
        match result.data() {
            Data::Matrix(m) => Ok(series_of(m)),
            _ => Err(MetricError::NotOneNumber {
                query: promql,
                found: "no range vector".into(),
            }),
        }
    }

    /// Runs an instant query that must return one number (or nothing).
    pub async fn query_one(&self, promql: &str) -> Result<Sample, MetricError> {
        self.query_one_at(promql, None).await
    }

    /// Runs an instant query evaluated at `at` (unix seconds; `None`: the server's now) and
    /// expects one number: what a replay of a past window (`cutover backtest`) asks.
    pub async fn query_one_at(&self, promql: &str, at: Option<f64>) -> Result<Sample, MetricError> {
        let mut q = self
            .client
            .query(promql)
            .timeout(self.timeout.as_millis() as i64);
        if let Some(at) = at {
            q = q.query("time", format!("{at:.3}"));
        }
        if let Some(value) = self.auth_header()? {
            q = q.header(reqwest::header::AUTHORIZATION, value);
        }
        let result = q.get().await.map_err(|e| self.map_error(promql, e))?;
        match result.data() {
            Data::Scalar(s) => Ok(Some(s.value())),
            Data::Vector(v) if v.is_empty() => Ok(None),
            Data::Vector(v) if v.len() == 1 => Ok(Some(v[0].sample().value())),
            Data::Vector(v) => Err(MetricError::NotOneNumber {
                query: promql.to_string(),
                found: format!("{} series", v.len()),
            }),
            Data::Matrix(m) => Err(MetricError::NotOneNumber {
                query: promql.to_string(),
                found: format!("a range vector of {} series", m.len()),
            }),
        }
    }

    fn map_error(&self, promql: &str, e: PromError) -> MetricError {
        match e {
            PromError::Prometheus(p) => MetricError::Refused {
                source_name: self.describe(),
                query: promql.to_string(),
                message: format!("{:?}: {}", p.error_type(), p.message()),
            },
            PromError::Client(c) if c.inner().and_then(|r| r.status()).is_some() => {
                let status = c.inner().and_then(|r| r.status()).unwrap_or_default();
                MetricError::HttpStatus {
                    source_name: self.describe(),
                    status: status.to_string(),
                    meaning: http_status_meaning(status.as_u16()).to_string(),
                }
            }
            PromError::Client(c) => {
                // The reqwest error without its URL: the URL repeats the whole query.
                let message = match c.inner() {
                    Some(r) => {
                        let kind = if r.is_timeout() {
                            "timed out".to_string()
                        } else if r.is_connect() {
                            "cannot connect".to_string()
                        } else if let Some(st) = r.status() {
                            format!("HTTP {st}")
                        } else if r.is_decode() {
                            "the answer is not Prometheus API JSON".to_string()
                        } else {
                            c.to_string()
                        };
                        match std::error::Error::source(r) {
                            Some(src) => format!("{kind}: {}", error_chain(src)),
                            None => kind,
                        }
                    }
                    None => c.to_string(),
                };
                MetricError::Unreachable {
                    source_name: self.describe(),
                    message,
                }
            }
            other => MetricError::Unreachable {
                source_name: self.describe(),
                message: error_chain(&other),
            },
        }
    }
}

/// What an HTTP error status from a Prometheus URL means, and what to check.
fn http_status_meaning(status: u16) -> &'static str {
    match status {
        401 => {
            "the credentials are missing or were refused; check prometheus.bearer_token_file or prometheus.basic_auth (is the token current?)"
        }
        403 => {
            "the credentials are not allowed to query; check the permissions of the token in prometheus.bearer_token_file"
        }
        404 => {
            "no Prometheus API at this URL; prometheus.url must be the server's base URL (with any path prefix, without /api/v1)"
        }
        407 => "a proxy wants credentials; check the proxy settings",
        429 => "the server is rate limiting queries; query less often or raise its limit",
        502..=504 => {
            "a proxy or load balancer in front of Prometheus cannot get an answer from it; Prometheus itself may be down or overloaded"
        }
        500..=599 => {
            "the server failed to answer (reachable, but erroring); check Prometheus's logs and load"
        }
        _ => "not a Prometheus API answer; check prometheus.url",
    }
}

/// The series of a matrix answer: labels and raw `(unix seconds, value)` samples.
fn series_of(m: &[prometheus_http_query::response::RangeVector]) -> Vec<Series> {
    m.iter()
        .map(|s| Series {
            labels: s
                .metric()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            samples: s
                .samples()
                .iter()
                .map(|x| (x.timestamp(), x.value()))
                .collect(),
        })
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !message.contains(&m) {
            message.push_str(&format!(": {m}"));
        }
        src = s.source();
    }
    message
}

#[async_trait]
impl MetricSource for PrometheusSource {
    fn describe(&self) -> String {
        format!("prometheus {}", self.url)
    }

    fn render(&self, m: &Measure) -> String {
        self.promql.render(m)
    }

    fn query_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    async fn measure(&self, m: &Measure, _now: SystemTime) -> Result<Sample, MetricError> {
        self.query_one(&self.render(m)).await
    }

    async fn count(&self, q: &CountQuery, now: SystemTime) -> Result<Counts, MetricError> {
        let secs = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        };
        let to = secs(now);
        let from = secs(q.from).min(to);
        let range = Duration::from_secs_f64(to - from).max(Duration::from_secs(1)) + LOOKBACK;
        let selectors = self.promql.count_selectors(q.counted, q.site);
        match q.counted {
            Counted::Errors => {
                let mut total = self.query_raw(&selectors[0], range, to).await?;
                let bad = self.query_raw(&selectors[1], range, to).await?;
                // The bad series are requests series too; one scraped between the two
                // queries joins the total.
                for b in &bad {
                    if !total.iter().any(|t| t.labels == b.labels) {
                        total.push(b.clone());
                    }
                }
                self.prove_births(&mut total, from, to, range).await?;
                Ok(count_errors(&total, &bad, from, to))
            }
            Counted::SlowerThan(edge) => {
                let mut series = self.query_raw(&selectors[0], range, to).await?;
                self.prove_births(&mut series, from, to, range).await?;
                count_slow(&series, from, to).ok_or_else(|| MetricError::Refused {
                    source_name: self.describe(),
                    query: selectors[0].clone(),
                    message: format!(
                        "traffic.latency has no bucket with le={edge}; set latency.above to one of the histogram's bucket edges"
                    ),
                })
            }
        }
    }
}

impl PrometheusSource {
    /// Gives the series first seen in `(from, to]` (no sample in the 5 minutes before) the
    /// zero they were born from, where Prometheus scraped their target successfully in
    /// those 5 minutes without them ([`with_births`]): one `up` query over the counting
    /// window, made only when such a series has a `job` and an `instance` label.
    async fn prove_births(
        &self,
        series: &mut [Series],
        from: f64,
        to: f64,
        range: Duration,
    ) -> Result<(), MetricError> {
        let targets: std::collections::BTreeSet<(&str, &str)> = series
            .iter()
            .filter(|s| first_seen_in(&s.samples, from, to))
            .filter_map(|s| target(&s.labels))
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let up = self.query_raw(&up_selector(&targets), range, to).await?;
        let scrapes = successful_scrapes(&up);
        for s in series.iter_mut() {
            if !first_seen_in(&s.samples, from, to) {
                continue;
            }
            if let Some(times) = target(&s.labels).and_then(|t| scrapes.get(&t)) {
                s.samples = with_births(&s.samples, times);
            }
        }
        Ok(())
    }
}

/// The `up` series of these targets (and perhaps of a few others: `job` and `instance` are
/// matched separately).
fn up_selector(targets: &std::collections::BTreeSet<(&str, &str)>) -> String {
    format!(
        "up{{job=~\"{}\",instance=~\"{}\"}}",
        escape_label_value(&regex_any_of(targets.iter().map(|t| t.0))),
        escape_label_value(&regex_any_of(targets.iter().map(|t| t.1))),
    )
}

/// A series' scrape target: its `job` and `instance` labels, if it has both.
fn target(labels: &std::collections::BTreeMap<String, String>) -> Option<(&str, &str)> {
    Some((
        labels.get("job")?.as_str(),
        labels.get("instance")?.as_str(),
    ))
}

/// The times, in order, at which each target was scraped successfully (`up == 1`), from
/// `up` series. A target whose `job` and `instance` two `up` series share is left out: which
/// of them a series came from is unknown.
fn successful_scrapes(up: &[Series]) -> std::collections::BTreeMap<(&str, &str), Vec<f64>> {
    let mut out = std::collections::BTreeMap::new();
    let mut shared = Vec::new();
    for s in up {
        let Some(t) = target(&s.labels) else {
            continue;
        };
        let times: Vec<f64> = s
            .samples
            .iter()
            .filter(|(_, v)| *v == 1.0)
            .map(|(t, _)| *t)
            .collect();
        if out.insert(t, times).is_some() {
            shared.push(t);
        }
    }
    for t in shared {
        out.remove(&t);
    }
    out
}

/// Requests and errors over `(from, to]` from the raw samples of every requests series
/// (`total`) and of those that are errors (`bad`, matched by labels): each series counted
/// once, so errors never exceed requests.
///
/// Unlike slow requests, errors are not a difference of two counters: an error series is
/// one of the requests series, counted the same way in both sums, so a reset seen on it
/// cannot invent errors. (A reset of a pod that only its error series shows — its other
/// series grew past their old values within one scrape — still undercounts that pod's other
/// requests in that step: nothing says which series share a process.)
pub fn count_errors(total: &[Series], bad: &[Series], from: f64, to: f64) -> Counts {
    let bad: std::collections::BTreeSet<_> = bad.iter().map(|s| &s.labels).collect();
    let mut all = Growth::default();
    let mut errors = 0.0;
    for s in total {
        let g = series_growth(&s.samples, from, to);
        if bad.contains(&s.labels) {
            errors += g.value;
        }
        all.value += g.value;
        all.resets += g.resets;
    }
    Counts {
        total: all.value,
        bad: errors.min(all.value),
        resets: all.resets,
    }
}

/// Requests and requests slower than the edge over `(from, to]` from a histogram's `+Inf`
/// and edge bucket series: each edge bucket paired with the `+Inf` bucket of the same labels
/// (all but `le`: one pod's histogram), counted by [`pair_growth`] so that a restart seen on
/// either resets both. A `+Inf` series without its edge bucket is left out (its requests'
/// speed is unknown); `None` if no `+Inf` series has one (the histogram lacks the edge).
pub fn count_slow(series: &[Series], from: f64, to: f64) -> Option<Counts> {
    type Pair<'a> = (Option<&'a Series>, Option<&'a Series>);
    let mut pairs: std::collections::BTreeMap<_, Pair<'_>> = std::collections::BTreeMap::new();
    for s in series {
        let Some(le) = s.labels.get("le").and_then(|v| parse_le(v)) else {
            continue;
        };
        let mut key = s.labels.clone();
        key.remove("le");
        let pair = pairs.entry(key).or_default();
        let side = if le == f64::INFINITY {
            &mut pair.0
        } else {
            &mut pair.1
        };
        side.get_or_insert(s);
    }
    let mut counts = Counts::default();
    let mut paired = false;
    let mut inf = false;
    for (whole, part) in pairs.values() {
        inf |= whole.is_some();
        let (Some(whole), Some(part)) = (whole, part) else {
            continue;
        };
        paired = true;
        let g = pair_growth(&whole.samples, &part.samples, from, to);
        counts.total += g.whole.value;
        counts.bad += g.rest();
        counts.resets += g.whole.resets;
    }
    (paired || !inf).then_some(counts)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(f64, f64)]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            samples: samples.to_vec(),
        }
    }

    /// Issue 12 (a) on labelled series: pod b goes from 10 requests of which 9 fast to 9 of
    /// 9 (it restarted); pod a served 10 more, 8 fast. 2 slow, not 11.
    #[test]
    fn slow_requests_are_counted_per_pod_pair() {
        let bucket = |pod, le, samples: &[(f64, f64)]| {
            series(&[("instance", pod), ("job", "web"), ("le", le)], samples)
        };
        let all = [
            bucket("a", "+Inf", &[(0.0, 100.0), (15.0, 110.0)]),
            bucket("a", "0.25", &[(0.0, 90.0), (15.0, 98.0)]),
            bucket("b", "+Inf", &[(0.0, 10.0), (15.0, 9.0)]),
            bucket("b", "0.250", &[(0.0, 9.0), (15.0, 9.0)]),
            // Another bucket layout without the edge (the query does not return its 0.3
            // bucket): its requests' speed is unknown, they are left out.
            bucket("c", "+Inf", &[(0.0, 10.0), (15.0, 20.0)]),
            bucket("c", "0.3", &[(0.0, 0.0), (15.0, 0.0)]),
        ];
        let fast: Vec<Series> = all
            .iter()
            .filter(|s| s.labels["le"] != "0.3")
            .cloned()
            .collect();
        let c = count_slow(&fast, 0.0, 15.0).unwrap();
        assert_eq!((c.total, c.bad, c.resets), (10.0 + 9.0, 2.0, 1));
        // Without the edge anywhere: an error to report, not zero slow requests.
        let none: Vec<Series> = all
            .iter()
            .filter(|s| s.labels["instance"] == "c" && s.labels["le"] != "0.3")
            .cloned()
            .collect();
        assert_eq!(count_slow(&none, 0.0, 15.0), None);
        assert_eq!(count_slow(&[], 0.0, 15.0), Some(Counts::default()));
    }

    #[test]
    fn errors_are_requests_series_counted_once() {
        let s = |status, samples: &[(f64, f64)]| {
            series(
                &[("instance", "a"), ("job", "web"), ("status", status)],
                samples,
            )
        };
        let ok = s("200", &[(0.0, 100.0), (15.0, 190.0)]);
        // Restarted: 5 errors before, 2 since.
        let errors = s("500", &[(0.0, 5.0), (15.0, 2.0)]);
        let c = count_errors(&[ok, errors.clone()], &[errors], 0.0, 15.0);
        assert_eq!((c.total, c.bad, c.resets), (92.0, 2.0, 1));
    }

    #[test]
    fn births_are_proven_by_successful_scrapes_of_the_series_target() {
        let up = [
            series(
                &[
                    ("__name__", "up"),
                    ("instance", "10.0.0.1:80"),
                    ("job", "web"),
                ],
                &[(0.0, 1.0), (15.0, 1.0), (30.0, 1.0)],
            ),
            // Failed scrapes prove nothing.
            series(
                &[
                    ("__name__", "up"),
                    ("instance", "10.0.0.2:80"),
                    ("job", "web"),
                ],
                &[(0.0, 0.0), (15.0, 0.0), (30.0, 1.0)],
            ),
            // Two targets share a job and an instance: which one is unknown.
            series(
                &[("env", "a"), ("instance", "x"), ("job", "web")],
                &[(15.0, 1.0)],
            ),
            series(
                &[("env", "b"), ("instance", "x"), ("job", "web")],
                &[(15.0, 1.0)],
            ),
        ];
        let scrapes = successful_scrapes(&up);
        assert_eq!(scrapes[&("web", "10.0.0.1:80")], vec![0.0, 15.0, 30.0]);
        assert_eq!(scrapes[&("web", "10.0.0.2:80")], vec![30.0]);
        assert!(!scrapes.contains_key(&("web", "x")));
        // The first errors of pod 1 at 30 are counted; pod 2's first sample is a baseline.
        let born = [(30.0, 3.0)];
        let one = with_births(&born, &scrapes[&("web", "10.0.0.1:80")]);
        let two = with_births(&born, &scrapes[&("web", "10.0.0.2:80")]);
        assert_eq!(series_growth(&one, 15.0, 30.0).value, 3.0);
        assert_eq!(series_growth(&two, 15.0, 30.0).value, 0.0);
        let targets = BTreeSet::from([("web", "10.0.0.1:80"), ("api", "10.0.0.2:80")]);
        assert_eq!(
            up_selector(&targets),
            r#"up{job=~"api|web",instance=~"10\\.0\\.0\\.2:80|10\\.0\\.0\\.1:80"}"#
        );
    }
}
