//! Exported metrics: `/metrics` for Prometheus to scrape, and an optional push to a
//! Pushgateway at every transition and at exit (a Job may end between two scrapes).
//!
//! Names and labels follow DESIGN.md; every series carries `service`. Units: weights in
//! percent (as everywhere in cutover), the observed share as a ratio (0–1), gate values in
//! their own unit (ratio, seconds, or the query's number).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Observer;
use cutover_core::run::{Event, EventKind, RunState};

type Labels = Vec<(String, String)>;
type FGauge = Gauge<f64, AtomicU64>;

/// The metrics of one run.
pub struct Telemetry {
    registry: Registry,
    service: String,
    primary_weight: Family<Labels, FGauge>,
    stage: Family<Labels, FGauge>,
    phase: Family<Labels, FGauge>,
    gate_value: Family<Labels, FGauge>,
    gate_threshold: Family<Labels, FGauge>,
    gate_status: Family<Labels, FGauge>,
    gate_evidence: Family<Labels, FGauge>,
    failure_limit: f64,
    gate_failures: std::sync::Mutex<(Option<usize>, std::collections::BTreeMap<String, u32>)>,
    stage_failures: Family<Labels, FGauge>,
    share: Family<Labels, FGauge>,
    check_status: Family<Labels, FGauge>,
    check_value: Family<Labels, FGauge>,
    rollbacks: Family<Labels, Counter>,
    probes: Family<Labels, Counter>,
    run_info: Family<Labels, FGauge>,
    awaiting_approval: Family<Labels, FGauge>,
    paused: Family<Labels, FGauge>,
    operator_actions: Family<Labels, Counter>,
    push: Option<Pusher>,
}

struct Pusher {
    url: String,
    http: reqwest::Client,
}

fn svc(service: &str) -> Labels {
    vec![("service".into(), service.into())]
}

impl Telemetry {
    /// Metrics for `service`'s run `run_id` on `backend`; `pushgateway` is a base URL.
    ///
    /// `failure_limit` scales `cutover_gate_evidence`: evidence toward rollback, where 1 rolls
    /// back (for threshold gates, the gate's failed analyses at this stage over the limit).
    pub fn new(
        service: &str,
        run_id: &str,
        backend: &str,
        pushgateway: Option<&str>,
        failure_limit: u32,
    ) -> Telemetry {
        let mut registry = Registry::default();
        macro_rules! family {
            ($name:expr, $help:expr, $t:ty) => {{
                let f = Family::<Labels, $t>::default();
                registry.register($name, $help, f.clone());
                f
            }};
        }
        let t = Telemetry {
            primary_weight: family!(
                "cutover_primary_weight",
                "Primary weight written and read back, in percent",
                FGauge
            ),
            stage: family!(
                "cutover_stage",
                "Current stage, 1-based; 0 before the first",
                FGauge
            ),
            phase: family!(
                "cutover_phase",
                "Phase code: 0 preflight, 1 settling, 2 judging, 3 rolling back, 4 promoted, 5 rolled back, 6 preflight failed, 7 aborted, 8 held, 9 rollback failed",
                FGauge
            ),
            gate_value: family!(
                "cutover_gate_value",
                "A gate's value at a site at the last analysis (ratio, seconds or the query's number)",
                FGauge
            ),
            gate_threshold: family!(
                "cutover_gate_threshold",
                "A gate's bound applied at the last analysis",
                FGauge
            ),
            gate_evidence: family!(
                "cutover_gate_evidence",
                "A gate's evidence toward rollback at this stage, 1 = roll back (threshold gates: failed analyses / failure_limit; sequential gates: ln(e) / ln(1/alpha) of the harm e-process)",
                FGauge
            ),
            failure_limit: f64::from(failure_limit.max(1)),
            gate_failures: std::sync::Mutex::new((None, std::collections::BTreeMap::new())),
            gate_status: family!(
                "cutover_gate_status",
                "A gate's result at the last analysis: 1 pass, 0.5 undecided (sequential), 0 no data, -1 fail, -2 error",
                FGauge
            ),
            stage_failures: family!(
                "cutover_stage_failures",
                "Failed analyses at the current stage (rollback at failure_limit)",
                FGauge
            ),
            check_status: family!(
                "cutover_check_status",
                "A readiness check's result (when: preflight or guard): 1 holds, 0 does not",
                FGauge
            ),
            check_value: family!(
                "cutover_check_value",
                "A readiness check's value (lag in seconds, bytes, ready capacity ratio, HTTP status)",
                FGauge
            ),
            share: family!(
                "cutover_observed_primary_share",
                "Observed primary share of requests (ratio 0-1)",
                FGauge
            ),
            rollbacks: family!("cutover_rollbacks", "Rollbacks started", Counter),
            probes: family!(
                "cutover_probes",
                "Probes started: a rise above DR's earlier rate judged against DR's concurrent traffic (analysis.probe)",
                Counter
            ),
            run_info: family!("cutover_run_info", "The run: its id and backend", FGauge),
            awaiting_approval: family!(
                "cutover_awaiting_approval",
                "The stage (1-based) whose weight waits for approval; 0 when none waits",
                FGauge
            ),
            paused: family!(
                "cutover_paused",
                "1 while an operator's pause holds the run at its weight",
                FGauge
            ),
            operator_actions: family!(
                "cutover_operator_actions",
                "Operator commands acknowledged, by action and whether the run took them",
                Counter
            ),
            registry,
            service: service.to_string(),
            push: pushgateway.map(|u| Pusher {
                url: format!(
                    "{}/metrics/job/cutover/service/{service}",
                    u.trim_end_matches('/')
                ),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("http client"),
            }),
        };
        let l = svc(service);
        t.rollbacks.get_or_create(&l).inc_by(0);
        t.probes.get_or_create(&l).inc_by(0);
        t.primary_weight.get_or_create(&l).set(0.0);
        t.stage.get_or_create(&l).set(0.0);
        t.phase.get_or_create(&l).set(0.0);
        t.stage_failures.get_or_create(&l).set(0.0);
        t.awaiting_approval.get_or_create(&l).set(0.0);
        t.paused.get_or_create(&l).set(0.0);
        let mut info = l.clone();
        info.push(("run_id".into(), run_id.into()));
        info.push(("backend".into(), backend.into()));
        t.run_info.get_or_create(&info).set(1.0);
        t
    }

    /// The metrics in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("encoding to a String cannot fail");
        out
    }

    fn update(&self, e: &Event, state: &RunState) {
        let l = svc(&self.service);
        self.phase
            .get_or_create(&l)
            .set(f64::from(state.phase.code()));
        if let Some(w) = state.weights {
            self.primary_weight
                .get_or_create(&l)
                .set(f64::from(w.primary()));
        }
        self.stage
            .get_or_create(&l)
            .set(state.stage.map_or(0.0, |i| i as f64 + 1.0));
        self.stage_failures
            .get_or_create(&l)
            .set(f64::from(state.counters.failures));
        let live = !state.phase.is_terminal();
        self.awaiting_approval.get_or_create(&l).set(
            state
                .awaiting
                .filter(|_| live)
                .map_or(0.0, |a| a.stage as f64 + 1.0),
        );
        self.paused
            .get_or_create(&l)
            .set(if live && state.paused.is_some() {
                1.0
            } else {
                0.0
            });
        match &e.kind {
            EventKind::Operator {
                action, accepted, ..
            } => {
                let mut v = l.clone();
                v.push((
                    "action".into(),
                    action.split_whitespace().next().unwrap_or("").into(),
                ));
                v.push(("accepted".into(), accepted.to_string()));
                self.operator_actions.get_or_create(&v).inc();
            }
            EventKind::RollbackStarted { .. } => {
                self.rollbacks.get_or_create(&l).inc();
            }
            EventKind::ProbeStarted { .. } => {
                self.probes.get_or_create(&l).inc();
            }
            EventKind::PreflightPassed { results }
            | EventKind::PreflightWaiting { results, .. } => self.checks("preflight", results),
            EventKind::Guards { results, .. } => self.checks("guard", results),
            EventKind::Analyzed {
                stage,
                share,
                results,
                ..
            } => {
                let mut counts = self.gate_failures.lock().unwrap_or_else(|p| p.into_inner());
                if counts.0 != Some(*stage) {
                    *counts = (Some(*stage), std::collections::BTreeMap::new());
                }
                if let Some(s) = share {
                    self.share.get_or_create(&l).set(*s);
                }
                for r in results {
                    let kind = match r.unit {
                        cutover_core::judge::gate::Unit::Ratio => "error_rate",
                        cutover_core::judge::gate::Unit::Seconds => "latency",
                        cutover_core::judge::gate::Unit::Number => "query",
                    };
                    let gate = |extra: &[(&str, &str)]| {
                        let mut v = svc(&self.service);
                        v.push(("gate".into(), r.name.clone()));
                        v.push(("kind".into(), kind.into()));
                        v.extend(extra.iter().map(|(k, x)| (k.to_string(), x.to_string())));
                        v
                    };
                    if let Some(p) = r.primary {
                        self.gate_value
                            .get_or_create(&gate(&[("site", "primary")]))
                            .set(p);
                    }
                    if let Some(d) = r.dr {
                        self.gate_value
                            .get_or_create(&gate(&[("site", "dr")]))
                            .set(d);
                    }
                    if let Some(m) = r.max {
                        self.gate_threshold
                            .get_or_create(&gate(&[("bound", "max")]))
                            .set(m);
                    }
                    if let Some(m) = r.min {
                        self.gate_threshold
                            .get_or_create(&gate(&[("bound", "min")]))
                            .set(m);
                    }
                    let status = match r.status {
                        cutover_core::GateStatus::Pass => 1.0,
                        cutover_core::GateStatus::NoData => 0.0,
                        cutover_core::GateStatus::Undecided => 0.5,
                        cutover_core::GateStatus::Fail => -1.0,
                        cutover_core::GateStatus::Error => -2.0,
                    };
                    self.gate_status.get_or_create(&gate(&[])).set(status);
                    let n = counts.1.entry(r.name.clone()).or_insert(0);
                    if r.status == cutover_core::GateStatus::Fail {
                        *n += 1;
                    }
                    // Sequential gates report their own evidence of harm on the same scale.
                    let evidence = r.evidence.unwrap_or(f64::from(*n) / self.failure_limit);
                    self.gate_evidence.get_or_create(&gate(&[])).set(evidence);
                }
            }
            _ => {}
        }
    }

    /// `cutover_check_status` and `cutover_check_value` of readiness results.
    fn checks(&self, when: &str, results: &[cutover_core::judge::preflight::PreflightResult]) {
        // The gates' data checks are reported as gates.
        for r in results.iter().filter(|r| r.kind != "gate") {
            let mut l = svc(&self.service);
            l.push(("check".into(), r.name.clone()));
            l.push(("kind".into(), r.kind.clone()));
            l.push(("when".into(), when.into()));
            self.check_status
                .get_or_create(&l)
                .set(if r.ok { 1.0 } else { 0.0 });
            if let Some(v) = r.value {
                self.check_value.get_or_create(&l).set(v);
            }
        }
    }

    /// Pushes the current metrics to the Pushgateway, if one is configured (bounded by 5 s).
    pub async fn push_now(&self) {
        let Some(p) = &self.push else { return };
        let body = self.render().replace("# EOF\n", "");
        match p
            .http
            .put(&p.url)
            .header("content-type", "text/plain; version=0.0.4")
            .body(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(target: "cutover::telemetry", status = %r.status(), "the Pushgateway refused the metrics")
            }
            Err(e) => {
                tracing::warn!(target: "cutover::telemetry", error = %e.without_url(), "cannot push metrics to the Pushgateway")
            }
        }
    }

    /// Serves `/metrics` on `addr` until the process ends.
    pub async fn serve(
        self: Arc<Self>,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<std::net::SocketAddr> {
        serve_metrics(addr, Arc::new(move || self.render())).await
    }
}

impl Observer for Telemetry {
    fn event(&self, e: &Event, state: &RunState) {
        self.update(e, state);
    }
}

/// Pushes after every event, in order, without ever blocking the run.
pub struct Pushing {
    tx: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Pushing {
    /// Starts the pushing task; returns the observer and the task (await it at exit to flush).
    pub fn start(t: Arc<Telemetry>) -> (Pushing, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                while rx.try_recv().is_ok() {}
                t.push_now().await;
            }
        });
        (Pushing { tx }, task)
    }
}

impl Observer for Pushing {
    fn event(&self, _e: &Event, _state: &RunState) {
        let _ = self.tx.send(());
    }
}

/// Serves `GET /metrics` on `addr` with what `render` returns (the exposition text); any
/// other path is 404. Returns the address bound (port 0 picks one).
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // A read-only, single-route endpoint: a few lines of HTTP/1.1 rather than a server
    // framework in the build.
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let render = render.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let (status, ctype, body) = if req.starts_with("GET /metrics") {
                    (
                        "200 OK",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        render(),
                    )
                } else {
                    ("404 Not Found", "text/plain", "try /metrics\n".to_string())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(local)
}
