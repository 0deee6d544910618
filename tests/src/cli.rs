//! Running `cutover` as a process and the policies the end-to-end tests give it.

use std::path::Path;
use std::time::Duration;

use crate::cutover_bin;

/// Analysis interval of the test policies, seconds.
pub const INTERVAL: u64 = 4;

/// A test policy: `backend` is the YAML of the `backend:` section (indented two spaces),
/// `weights` the primary weights of the stages.
pub fn policy_text(
    backend: &str,
    prometheus_url: &str,
    weights: &[u8],
    max_duration: &str,
    extra: &str,
) -> String {
    policy_text_for(
        "checkout",
        backend,
        prometheus_url,
        weights,
        max_duration,
        extra,
    )
}

/// [`policy_text`] for another service name (its metrics carry `service="<name>"`).
pub fn policy_text_for(
    service: &str,
    backend: &str,
    prometheus_url: &str,
    weights: &[u8],
    max_duration: &str,
    extra: &str,
) -> String {
    let stages: String = weights
        .iter()
        .map(|w| format!("  - weight: {w}\n"))
        .collect();
    format!(
        r#"service: {service}
backend:
{backend}
prometheus:
  url: {prometheus_url}
  timeout: 2s
sites: {{ label: site, primary: primary, dr: dr }}
traffic:
  requests: http_requests_total{{service="{service}"}}
  errors: 'status=~"5.."'
  latency: http_request_duration_seconds_bucket{{service="{service}"}}
defaults: {{ bake: 8s, interval: {INTERVAL}s, max_duration: {max_duration} }}
stages:
{stages}gates:
  - name: error-rate
    window: 8s
    error_rate: {{ max: 1% }}
  - name: error-rate-vs-dr
    window: 8s
    error_rate: {{ max_vs_dr: 50%, slack: 0.5% }}
  - name: p99-latency
    window: 8s
    latency: {{ quantile: 0.99, max: 300ms }}
  - name: queue-depth
    query: 'max(queue_depth{{site="{{{{site}}}}"}})'
    max: 1000
analysis:
  min_requests: 50
  failure_limit: 2
  consecutive_error_limit: 3
preflight:
  - name: replication-lag
    query: max(pg_replication_lag_seconds)
    max: 60
{extra}"#
    )
}

/// Runs `cutover ARGS` in the workspace and returns its exit code and stdout + stderr.
pub fn cutover(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(cutover_bin())
        .args(args)
        .current_dir(crate::workspace())
        .output()
        .expect("cutover runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// What a `cutover` process did.
pub struct Finished {
    /// Its exit code.
    pub code: i32,
    /// stdout and stderr.
    pub output: String,
    /// The persisted run state (`Null` if none).
    pub state: serde_json::Value,
}

impl Finished {
    /// The primary weight of every confirmed change, in order.
    pub fn primary_history(&self) -> Vec<u64> {
        self.state["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(|c| c["weights"]["primary"].as_u64())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When the last change was confirmed.
    pub fn last_change_at(&self) -> std::time::SystemTime {
        let at = &self.state["history"]
            .as_array()
            .and_then(|h| h.last())
            .expect("a change")["at"];
        let secs = at["secs_since_epoch"].as_u64().unwrap_or(0);
        let nanos = at["nanos_since_epoch"].as_u64().unwrap_or(0);
        std::time::SystemTime::UNIX_EPOCH + Duration::new(secs, nanos as u32)
    }
}

/// Runs `cutover ARGS --state-file STATE` (bounded by `limit`) with extra environment.
pub async fn run_cutover(
    args: &[&str],
    state: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> Finished {
    let mut cmd = tokio::process::Command::new(cutover_bin());
    cmd.args(args)
        .arg("--state-file")
        .arg(state)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("cutover {args:?} did not end within {limit:?}"))
        .expect("cutover runs");
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{output}");
    let state = std::fs::read(state)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    Finished {
        code: out.status.code().unwrap_or(-1),
        output,
        state,
    }
}
