//! History for `cutover backtest` and `cutover tune`: two sites' traffic written as
//! OpenMetrics, backfilled into a fresh TSDB with Debian's `promtool tsdb create-blocks-from
//! openmetrics`, and a real Prometheus serving it on loopback (no scraping; killed on drop,
//! its log shown if the test is failing).
//!
//! The traffic: each scrape, each site serves a Poisson-like number of requests at its rate,
//! a binomial-like share of them errors (`status="500"`), and their latency falls into the
//! buckets of `http_request_duration_seconds` (0.1, 0.25, 0.5, 1 s). A site can be down for
//! a scrape (a gap: no sample) or restart (its counters start again from zero).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::{TempDir, free_port, require_program};

/// The service name in the generated series' `service` label.
pub const SERVICE: &str = "shop";
/// The bucket edges of the latency histogram, in seconds (and `+Inf`).
pub const EDGES: [f64; 4] = [0.1, 0.25, 0.5, 1.0];
/// Healthy latency: the share of requests slower than each edge.
pub const HEALTHY_SLOWER: [f64; 4] = [0.3, 0.04, 0.008, 0.001];

/// What one site does during one scrape interval.
#[derive(Debug, Clone, Copy)]
pub struct SiteAt {
    /// Requests per second.
    pub rps: f64,
    /// Share of requests that are errors.
    pub error_rate: f64,
    /// Multiplies the share of slow requests at every edge (capped at 1).
    pub slow_factor: f64,
    /// No sample at this scrape (a scrape gap).
    pub gap: bool,
    /// The counters start again from zero at this scrape (a restart).
    pub restart: bool,
}

impl SiteAt {
    /// A healthy site at `rps` with `error_rate` errors.
    pub fn healthy(rps: f64, error_rate: f64) -> SiteAt {
        SiteAt {
            rps,
            error_rate,
            slow_factor: 1.0,
            gap: false,
            restart: false,
        }
    }
}

/// A normal-approximated Poisson draw (rounded, never negative).
fn poisson(rng: &mut rand::rngs::StdRng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (mean + mean.sqrt() * z).round().max(0.0) as u64
}

/// A binomial-like draw: `n` trials at `p` (normal-approximated, clamped to `0..=n`).
fn binomial(rng: &mut rand::rngs::StdRng, n: u64, p: f64) -> u64 {
    let p = p.clamp(0.0, 1.0);
    let mean = n as f64 * p;
    let sd = (mean * (1.0 - p)).sqrt();
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    ((mean + sd * z).round().max(0.0) as u64).min(n)
}

/// One site's cumulative counters.
#[derive(Default, Clone)]
struct Counters {
    ok: u64,
    errors: u64,
    /// Cumulative bucket counts: one per edge, then `+Inf`.
    buckets: [u64; 5],
}

/// What one service does: its name (the `service` label), the seed of its draws, and
/// `at(t, site)`, what a site does during the scrape interval ending at `t` (`site` is
/// `"primary"` or `"dr"`).
pub type ServiceHistory<'a> = (&'a str, u64, &'a dyn Fn(i64, &str) -> SiteAt);

/// Two sites' traffic of service [`SERVICE`] from `start` to `end` (unix seconds) at one
/// scrape every `scrape` seconds, as OpenMetrics text ending in `# EOF`.
pub fn openmetrics(
    start: i64,
    end: i64,
    scrape: i64,
    seed: u64,
    at: impl Fn(i64, &str) -> SiteAt,
) -> String {
    openmetrics_of(start, end, scrape, &[(SERVICE, seed, &at)])
}

/// A standard normal number that depends only on `t` and `seed` (a noise that two
/// histories of the same service share).
pub fn normal_at(t: i64, seed: u64) -> f64 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix((t as u64).wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    let b = mix(a);
    let u1 = ((a >> 11) as f64 / (1u64 << 53) as f64).max(1e-12);
    let u2 = (b >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// One service's site and its counters at every scrape that has a sample.
type SiteSamples<'a> = (&'a str, &'a str, Vec<(i64, Counters)>);

/// Several services' two-site traffic over `start..=end`, one OpenMetrics text.
pub fn openmetrics_of(
    start: i64,
    end: i64,
    scrape: i64,
    services: &[ServiceHistory<'_>],
) -> String {
    // Per service and site: (t, counters) at every scrape that has a sample.
    let mut samples: Vec<SiteSamples<'_>> = Vec::new();
    for (service, seed, at) in services {
        let mut rng = rand::rngs::StdRng::seed_from_u64(*seed);
        for site in ["primary", "dr"] {
            let mut c = Counters::default();
            let mut got = Vec::new();
            let mut t = start;
            while t <= end {
                let a = at(t, site);
                if a.restart {
                    c = Counters::default();
                }
                let n = poisson(&mut rng, a.rps * scrape as f64);
                let e = binomial(&mut rng, n, a.error_rate);
                c.ok += n - e;
                c.errors += e;
                // Slower than each edge, nested: each edge's slow requests among the last's.
                let mut slower = n;
                let mut last_share = 1.0;
                for (k, share) in HEALTHY_SLOWER.iter().enumerate() {
                    let s = (share * a.slow_factor).min(1.0);
                    slower = binomial(&mut rng, slower, (s / last_share).min(1.0));
                    last_share = s.max(1e-12);
                    c.buckets[k] += n - slower;
                }
                c.buckets[4] += n;
                if !a.gap {
                    got.push((t, c.clone()));
                }
                t += scrape;
            }
            samples.push((service, site, got));
        }
    }
    let points: usize = samples.iter().map(|s| s.2.len()).sum();
    let mut out = String::with_capacity(points * 7 * 100);
    out.push_str("# TYPE http_requests counter\n");
    for (service, site, got) in &samples {
        for (status, pick) in [("200", 0), ("500", 1)] {
            for (t, c) in got {
                let v = if pick == 0 { c.ok } else { c.errors };
                let _ = writeln!(
                    out,
                    "http_requests_total{{service=\"{service}\",site=\"{site}\",status=\"{status}\"}} {v} {t}"
                );
            }
        }
    }
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for (service, site, got) in &samples {
        for k in 0..5 {
            let le = EDGES.get(k).map_or("+Inf".to_string(), |e| e.to_string());
            for (t, c) in got {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{service=\"{service}\",site=\"{site}\",le=\"{le}\"}} {} {t}",
                    c.buckets[k]
                );
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A Prometheus serving backfilled history (nothing scraped).
pub struct Backfilled {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
}

impl Backfilled {
    /// Backfills `history` (OpenMetrics) with `promtool`, then starts Prometheus on its
    /// blocks, with `--query.max-samples` set when given; waits until ready (bounded).
    pub async fn start(history: &str, max_samples: Option<u64>) -> Backfilled {
        let promtool = require_program("promtool");
        let bin = require_program("prometheus");
        let dir = TempDir::new("backfill");
        let input = dir.path().join("history.om");
        std::fs::write(&input, history).expect("write the OpenMetrics history");
        let data = dir.path().join("data");
        let out = Command::new(&promtool)
            // Blocks of up to 486 h (20 days; the largest of the TSDB's ranges that fits):
            // promtool reads the whole input once per block, so 2 h blocks of two weeks
            // would read it 168 times.
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--quiet",
                "--max-block-duration=486h",
            ])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool tsdb create-blocks-from openmetrics failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&input);
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").expect("write prometheus.yml");
        let mut p = Backfilled {
            child: None,
            port: 0,
            dir,
        };
        for _ in 0..5 {
            p.port = free_port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p.dir.path().join("prometheus.log"))
                .expect("log file");
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{}", p.port))
                .arg("--storage.tsdb.retention.time=3650d")
                .stdout(Stdio::null())
                .stderr(Stdio::from(log));
            if let Some(n) = max_samples {
                cmd.arg(format!("--query.max-samples={n}"));
            }
            p.child = Some(cmd.spawn().expect("prometheus starts"));
            if p.wait_ready().await {
                return p;
            }
            p.kill();
        }
        panic!("could not start prometheus on its backfilled blocks in 5 attempts");
    }

    /// Whether our server became ready (and is ours: its data folder) within 30 s.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        let want = self.dir.path().join("data").display().to_string();
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if let Ok(r) = http
                .get(format!("{}/api/v1/status/flags", self.url()))
                .send()
                .await
                && let Ok(v) = r.json::<serde_json::Value>().await
            {
                return v["data"]["storage.tsdb.path"].as_str() == Some(want.as_str());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A folder of the test's own, removed with the server.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Backfilled {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            crate::logs::print_tail("prometheus", &self.dir.path().join("prometheus.log"));
        }
    }
}
