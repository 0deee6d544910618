//! A real Prometheus server (Debian's package) on a loopback port, 1 s scrape interval,
//! temporary TSDB; killed on drop, its log shown then if the test is failing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TempDir, free_port, require_program};

/// A running Prometheus.
pub struct Prometheus {
    child: Option<Child>,
    bin: std::path::PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (host:port) every second, and waits until ready.
    pub async fn start(targets: &[String]) -> Prometheus {
        let bin = require_program("prometheus");
        let dir = TempDir::new("prometheus");
        let port = free_port();
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: workload\n    static_configs:\n      - targets: [{list}]\n"
        );
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config).expect("write prometheus.yml");
        let mut p = Prometheus {
            child: None,
            bin,
            port,
            _dir: dir,
        };
        // A port found free may be taken by a concurrent test's server before ours binds
        // it; then "ready" would be answered by the other server. Check that the server on
        // the port is this one (its data folder), else try another port. Bounded.
        for _ in 0..5 {
            p.spawn();
            p.wait_ready().await;
            if p.is_ours().await {
                return p;
            }
            p.kill();
            p.port = free_port();
        }
        panic!("could not start prometheus on a port of its own in 5 attempts");
    }

    /// Whether the server answering on our port is the one we started.
    async fn is_ours(&self) -> bool {
        let want = self._dir.path().join("data").display().to_string();
        let flags: Option<serde_json::Value> = match reqwest::Client::new()
            .get(format!("{}/api/v1/status/flags", self.url()))
            .send()
            .await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        flags.is_some_and(|f| f["data"]["storage.tsdb.path"].as_str() == Some(want.as_str()))
    }

    fn spawn(&mut self) {
        let dir = self._dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("prometheus.log"))
            .expect("log file");
        let child = Command::new(&self.bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--storage.tsdb.retention.time=1h")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus starts");
        self.child = Some(child);
    }

    /// Starts a killed server again on the same port and data (a recovery).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(format!("{}/-/ready", self.url())).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready in 30s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs an instant query and returns the JSON `data.result`.
    pub async fn query(&self, q: &str) -> anyhow::Result<serde_json::Value> {
        let r: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", q)])
            .send()
            .await?
            .json()
            .await?;
        if r["status"] != "success" {
            anyhow::bail!("query `{q}` failed: {r}");
        }
        Ok(r["data"]["result"].clone())
    }

    /// Runs a range query (as Grafana does) over `[start, end]` with a 1 s step; returns
    /// `data.result`.
    pub async fn query_range(
        &self,
        q: &str,
        start: f64,
        end: f64,
    ) -> anyhow::Result<serde_json::Value> {
        let r: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query_range", self.url()))
            .query(&[
                ("query", q),
                ("start", &start.to_string()),
                ("end", &end.to_string()),
                ("step", "1"),
            ])
            .send()
            .await?
            .json()
            .await?;
        if r["status"] != "success" {
            anyhow::bail!("range query `{q}` failed: {r}");
        }
        Ok(r["data"]["result"].clone())
    }

    /// Polls (bounded) until `q` returns at least one series.
    pub async fn wait_for_data(&self, q: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(v) = self.query(q).await
                && v.as_array().is_some_and(|a| !a.is_empty())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no data for `{q}` within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Kills the server now (a crash, from the controller's point of view).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            crate::logs::print_tail("prometheus", &self._dir.path().join("prometheus.log"));
        }
    }
}
