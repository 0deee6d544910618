//! A workload exporter: serves per-site request counters and latency histograms on
//! loopback, with traffic that follows the primary weight in a `file` backend's JSON file.
//!
//! Counts are expectations, not random draws, exported as fractional counters (the text
//! format allows them), so a test's numbers are exact and its verdicts repeatable.
//! Behaviour can change during a test, directly or when the primary weight reaches a stage.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the exported latency histogram.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How one site behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    /// Share of requests answered 500.
    pub error_rate: f64,
    /// Median latency, seconds (log-normal, sigma 0.5: p99 is ~3.2x the median).
    pub latency_median: f64,
    /// Whether requests routed here arrive at all.
    pub reachable: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            error_rate: 0.002,
            latency_median: 0.05,
            reachable: true,
        }
    }
}

#[derive(Default, Clone)]
struct SiteCounters {
    ok: f64,
    errors: f64,
    buckets: [f64; BUCKETS.len()],
    count: f64,
    sum: f64,
}

struct State {
    service: String,
    observed: Vec<u8>,
    weights_file: PathBuf,
    rps: f64,
    sites: [Behaviour; 2],
    counters: [SiteCounters; 2],
    rules: Vec<(u8, usize, Behaviour, bool)>,
    gauges: Vec<(String, f64)>,
    changed_at: Option<SystemTime>,
    max_weight_seen: u8,
}

/// A running exporter; stops when dropped.
pub struct Exporter {
    state: Arc<Mutex<State>>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lognormal_cdf(x: f64, median: f64) -> f64 {
    let z = (x.ln() - median.ln()) / 0.5;
    0.5 * (1.0 + statrs::function::erf::erf(z / std::f64::consts::SQRT_2))
}

impl Exporter {
    /// Starts serving `/metrics`; traffic of `rps` requests/s is split by the weights in
    /// `weights_file` (all on DR while it is missing).
    pub async fn start(weights_file: PathBuf, rps: f64) -> Exporter {
        Self::start_for("checkout", weights_file, rps).await
    }

    /// Like [`Exporter::start`], labelling the metrics with `service`.
    pub async fn start_for(service: &str, weights_file: PathBuf, rps: f64) -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind exporter");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            service: service.to_string(),
            observed: Vec::new(),
            weights_file,
            rps,
            sites: [Behaviour::default(); 2],
            counters: Default::default(),
            rules: Vec::new(),
            gauges: vec![("pg_replication_lag_seconds".into(), 2.0)],
            changed_at: None,
            max_weight_seen: 0,
        }));
        let st = state.clone();
        let ticker = tokio::spawn(async move {
            let tick = Duration::from_millis(100);
            let mut iv = tokio::time::interval(tick);
            loop {
                iv.tick().await;
                st.lock().unwrap().tick(tick.as_secs_f64());
            }
        });
        let st = state.clone();
        let watcher = tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_millis(20));
            loop {
                iv.tick().await;
                let mut s = st.lock().unwrap();
                let w = s.primary_weight();
                s.observe(w);
            }
        });
        let st = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let body = st.lock().unwrap().render();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Exporter {
            state,
            port,
            tasks: vec![ticker, watcher, server],
        }
    }

    /// `127.0.0.1:port`, for a scrape config.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sets a site's behaviour now (site 0 = primary, 1 = DR).
    pub fn set(&self, site: usize, b: Behaviour) {
        let mut s = self.state.lock().unwrap();
        s.sites[site] = b;
        s.changed_at = Some(SystemTime::now());
    }

    /// Sets a site's behaviour once the primary weight reaches `weight`.
    pub fn on_weight(&self, weight: u8, site: usize, b: Behaviour) {
        self.state
            .lock()
            .unwrap()
            .rules
            .push((weight, site, b, false));
    }

    /// The weights file the traffic follows.
    pub fn weights_file(&self) -> PathBuf {
        self.state.lock().unwrap().weights_file.clone()
    }

    /// Sets a gauge served as `name value`.
    pub fn set_gauge(&self, name: &str, v: f64) {
        let mut s = self.state.lock().unwrap();
        s.gauges.retain(|(n, _)| n != name);
        s.gauges.push((name.to_string(), v));
    }

    /// When a behaviour last changed (directly or by a rule).
    pub fn changed_at(&self) -> Option<SystemTime> {
        self.state.lock().unwrap().changed_at
    }

    /// The highest primary weight read from the weights file so far.
    pub fn max_weight_seen(&self) -> u8 {
        self.state.lock().unwrap().max_weight_seen
    }

    /// Every primary weight seen in the weights file (polled every 20 ms), repeats folded.
    pub fn observed_weights(&self) -> Vec<u8> {
        self.state.lock().unwrap().observed.clone()
    }

    /// Zeroes a site's counters, as a restarted pod's are: a counter reset for Prometheus.
    pub fn restart_site(&self, site: usize) {
        self.state.lock().unwrap().counters[site] = SiteCounters::default();
    }

    /// Back to healthy sites, no rules, nothing observed: ready for another run.
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.sites = [Behaviour::default(); 2];
        s.rules.clear();
        s.observed.clear();
        s.max_weight_seen = 0;
        s.changed_at = None;
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl State {
    fn primary_weight(&self) -> u8 {
        std::fs::read_to_string(&self.weights_file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["primary"].as_u64())
            .map(|w| w.min(100) as u8)
            .unwrap_or(0)
    }

    fn observe(&mut self, w: u8) {
        if self.observed.last() != Some(&w) {
            self.observed.push(w);
        }
    }

    fn tick(&mut self, dt: f64) {
        let w = self.primary_weight();
        self.observe(w);
        self.max_weight_seen = self.max_weight_seen.max(w);
        for rule in self.rules.iter_mut() {
            if !rule.3 && w >= rule.0 {
                rule.3 = true;
                self.sites[rule.1] = rule.2;
                self.changed_at = Some(SystemTime::now());
            }
        }
        let mut share = f64::from(w) / 100.0;
        if !self.sites[0].reachable {
            share = 0.0;
        }
        for (i, part) in [share, 1.0 - share].into_iter().enumerate() {
            let b = self.sites[i];
            if !b.reachable {
                continue;
            }
            let n = self.rps * part * dt;
            let c = &mut self.counters[i];
            c.errors += n * b.error_rate;
            c.ok += n * (1.0 - b.error_rate);
            c.count += n;
            c.sum += n * b.latency_median * 1.13;
            for (k, bound) in BUCKETS.iter().enumerate() {
                c.buckets[k] += n * lognormal_cdf(*bound, b.latency_median);
            }
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let svc = &self.service;
        let sites = ["primary", "dr"];
        let _ = writeln!(out, "# TYPE http_requests_total counter");
        for (i, site) in sites.iter().enumerate() {
            if !self.sites[i].reachable && self.counters[i].count == 0.0 {
                continue;
            }
            let c = &self.counters[i];
            let _ = writeln!(
                out,
                "http_requests_total{{service=\"{svc}\",site=\"{site}\",status=\"200\"}} {}",
                c.ok
            );
            let _ = writeln!(
                out,
                "http_requests_total{{service=\"{svc}\",site=\"{site}\",status=\"500\"}} {}",
                c.errors
            );
        }
        let _ = writeln!(out, "# TYPE http_request_duration_seconds histogram");
        for (i, site) in sites.iter().enumerate() {
            if !self.sites[i].reachable && self.counters[i].count == 0.0 {
                continue;
            }
            let c = &self.counters[i];
            for (k, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{service=\"{svc}\",site=\"{site}\",le=\"{bound}\"}} {}",
                    c.buckets[k]
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{service=\"{svc}\",site=\"{site}\",le=\"+Inf\"}} {}",
                c.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{service=\"{svc}\",site=\"{site}\"}} {}",
                c.sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{service=\"{svc}\",site=\"{site}\"}} {}",
                c.count
            );
        }
        for (i, site) in sites.iter().enumerate() {
            let _ = writeln!(out, "queue_depth{{site=\"{site}\"}} {}", 10 + i * 5);
        }
        for (name, v) in &self.gauges {
            let _ = writeln!(out, "{name} {v}");
        }
        out
    }
}
