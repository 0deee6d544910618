//! Running `cutover` as a process and the policies the end-to-end tests give it.
//!
//! A process's stdout and stderr go to one file of the test's [`Logs`], shown only if the
//! test fails; [`Finished::output`] and [`Running::output`] read it for assertions.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cutover_bin;
use crate::logs::Logs;

/// Analysis interval of the test policies, seconds.
pub const INTERVAL: u64 = 4;

/// The `backend:` section of a policy on the `file` backend at `weights`.
pub fn file_backend(weights: &Path) -> String {
    format!("  file:\n    path: {}", weights.display())
}

/// A test policy, written to a file: short windows, four gates, a preflight check.
#[derive(Debug, Clone)]
pub struct Policy {
    path: PathBuf,
    service: String,
    backend: String,
    prometheus: String,
    stages: Vec<u8>,
    max_duration: String,
    extra: String,
}

impl Policy {
    /// The policy of `checkout` at `path`: `backend` is the YAML of the `backend:` section
    /// (indented two spaces), judged by the Prometheus at `prometheus`; stages 10, 25, 50
    /// and 100 % primary, 60 s at most each.
    pub fn new(path: PathBuf, backend: &str, prometheus: &str) -> Policy {
        Policy {
            path,
            service: "checkout".into(),
            backend: backend.into(),
            prometheus: prometheus.into(),
            stages: vec![10, 25, 50, 100],
            max_duration: "60s".into(),
            extra: String::new(),
        }
    }

    /// Written to this file instead.
    pub fn at(mut self, path: PathBuf) -> Policy {
        self.path = path;
        self
    }

    /// For another service (its metrics carry `service="<name>"`).
    pub fn service(mut self, name: &str) -> Policy {
        self.service = name.into();
        self
    }

    /// Another `backend:` section.
    pub fn backend(mut self, yaml: &str) -> Policy {
        self.backend = yaml.into();
        self
    }

    /// Judged by another Prometheus.
    pub fn prometheus(mut self, url: &str) -> Policy {
        self.prometheus = url.into();
        self
    }

    /// The primary weights of the stages.
    pub fn stages(mut self, weights: &[u8]) -> Policy {
        self.stages = weights.to_vec();
        self
    }

    /// How long a stage may stay undecided.
    pub fn max_duration(mut self, span: &str) -> Policy {
        self.max_duration = span.into();
        self
    }

    /// Top-level YAML appended to the policy (`notify:`, `rollback:`, `on_signal:` ...).
    pub fn extra(mut self, yaml: &str) -> Policy {
        self.extra = yaml.into();
        self
    }

    /// The policy's text.
    pub fn text(&self) -> String {
        let Policy {
            service,
            backend,
            prometheus,
            max_duration,
            extra,
            ..
        } = self;
        let stages: String = self
            .stages
            .iter()
            .map(|w| format!("  - weight: {w}\n"))
            .collect();
        format!(
            r#"service: {service}
backend:
{backend}
prometheus:
  url: {prometheus}
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

    /// Writes the policy to its file and returns the file's path.
    pub fn write(&self) -> PathBuf {
        std::fs::write(&self.path, self.text())
            .unwrap_or_else(|e| panic!("write {}: {e}", self.path.display()));
        self.path.clone()
    }
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

/// `cutover ARGS` being put together; its output goes to a test's [`Logs`].
pub struct Cutover<'a> {
    logs: &'a Logs,
    cmd: tokio::process::Command,
    label: String,
    state: Option<PathBuf>,
}

impl Logs {
    /// `cutover ARGS`, to be spawned or run with its output in these logs.
    pub fn cutover<I, S>(&self, args: I) -> Cutover<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Cutover {
            logs: self,
            cmd: tokio::process::Command::new(cutover_bin()),
            label: "cutover".into(),
            state: None,
        };
        c.cmd.kill_on_drop(true);
        c.args(args)
    }
}

impl<'a> Cutover<'a> {
    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        let a = arg.as_ref();
        self.label.push(' ');
        self.label.push_str(&a.to_string_lossy());
        self.cmd.arg(a);
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// `--state-file PATH`; the state is read back when the process ends.
    pub fn state_file(self, path: &Path) -> Self {
        let mut c = self.arg("--state-file").arg(path);
        c.state = Some(path.to_path_buf());
        c
    }

    /// An environment variable of the process.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Environment variables of the process.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        for (k, v) in vars {
            self.cmd.env(k, v);
        }
        self
    }

    /// Runs it in `dir`.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// The bare command, for a caller that handles its output itself ([`crate::race`]).
    pub fn command(self) -> tokio::process::Command {
        self.cmd
    }

    /// Starts it (killed if the handle drops while it runs).
    pub fn spawn(mut self) -> Running {
        let (log, out, err) = self.logs.sink(&self.label);
        let child = self
            .cmd
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", self.label));
        Running {
            pid: child.id().expect("a pid"),
            child,
            label: self.label,
            log,
            state: self.state,
        }
    }

    /// Runs it to its end, failing the test if that takes longer than `limit`.
    pub async fn finish(self, limit: Duration) -> Finished {
        self.spawn().wait_exit(limit).await
    }
}

/// A running `cutover` process.
pub struct Running {
    child: tokio::process::Child,
    pid: u32,
    label: String,
    log: PathBuf,
    state: Option<PathBuf>,
}

impl Running {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What it printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends it a signal by name (`TERM`, `INT`), as Kubernetes or an operator would.
    pub fn signal(&self, name: &str) {
        let sent = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name} {} failed", self.pid);
    }

    /// kill -9, and waits for it to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Its exit code if it has ended (`-1`: killed by a signal).
    pub fn try_exit(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.code().unwrap_or(-1)),
            _ => None,
        }
    }

    /// Its exit code if it ends within `limit`; `None` if it still runs then.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<i32> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("cutover is waited for").code().unwrap_or(-1))
    }

    /// Waits for its end, failing the test if that takes longer than `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Finished {
        let code = self
            .exit_within(limit)
            .await
            .unwrap_or_else(|| panic!("{} did not end within {limit:?}", self.label));
        Finished {
            code,
            output: self.output(),
            state: self
                .state
                .as_deref()
                .map(crate::read_json)
                .unwrap_or_default(),
        }
    }
}

/// What a `cutover` process did.
pub struct Finished {
    /// Its exit code (`-1`: killed by a signal).
    pub code: i32,
    /// stdout and stderr.
    pub output: String,
    /// The persisted run state (`Null` if none).
    pub state: serde_json::Value,
}

impl Finished {
    /// The primary weight of every confirmed change, in order.
    pub fn primary_history(&self) -> Vec<u64> {
        primary_history(&self.state)
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

/// The primary weight of every confirmed change of a persisted run state, in order.
pub fn primary_history(state: &serde_json::Value) -> Vec<u64> {
    state["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|c| c["weights"]["primary"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}
