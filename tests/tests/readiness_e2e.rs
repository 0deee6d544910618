//! End to end: readiness checks against the real thing (or, where it cannot run here, a
//! server speaking its wire format) and a real run (real Prometheus, the workload exporter,
//! the file backend).
//!
//! Given a primary-to-be whose data or capacity is not ready,
//! when `cutover run` drives the policy,
//! then it waits (preflight) or holds (guards), writes no weight the primary cannot take,
//! and goes on once the primary is ready; no secret appears in anything it writes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cutover_tests::env::{Env, RUN_LIMIT};
use cutover_tests::kube_api::KubeApi;
use cutover_tests::patroni::{PatroniApi, documented_cluster};
use cutover_tests::pgwire::{PgWire, VirtualCluster, timestamptz_ago};
use cutover_tests::postgres::{PASSWORD, PgPair};
use cutover_tests::wait_until;

/// The test policy on `stages`, with `check` (YAML list items) first among its preflight
/// checks and `guards` (YAML, may be empty) appended.
fn policy(env: &Env, stages: &[u8], check: &str, guards: &str) -> PathBuf {
    let text = env
        .policy()
        .stages(stages)
        .max_duration("90s")
        .extra(guards)
        .text()
        .replacen("preflight:\n", &format!("preflight:\n{check}"), 1);
    let p = env.path("checkout.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn postgres_check(pg: &PgPair, dir: &Env, wait: &str) -> String {
    let standby = pg.secret_file("standby.conn", pg.standby_port);
    let writer = pg.secret_file("writer.conn", pg.writer_port);
    let _ = dir;
    format!(
        "  - name: pg-replication\n    postgres: {{ primary_connection_file: {}, dr_connection_file: {}, max_lag: 5s }}\n{wait}",
        standby.display(),
        writer.display()
    )
}

/// Waits until the standby is more than `secs` behind: replay paused and writes going on.
async fn lag_above(pg: &PgPair, secs: f64) {
    let c = pg.standby().await;
    let start = Instant::now();
    loop {
        let rows = c
            .simple_query("SELECT COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::text")
            .await
            .unwrap();
        let lag: f64 = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            })
            .unwrap_or(0.0);
        if lag > secs {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "lag stayed at {lag}s\n{}",
            pg.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{what} shows the password:\n{text}"
    );
}

fn report_text(dir: &Path) -> String {
    ["report.json", "report.md"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_standby_makes_preflight_wait_then_fail_with_no_weight_written() {
    let pg = PgPair::start("lag-fails").await;
    let env = Env::with_prometheus("pg-lag-fails").await;
    pg.pause_replay(true).await;
    let writes = pg.keep_writing().await;
    lag_above(&pg, 6.0).await;
    let check = postgres_check(&pg, &env, "    wait: 20s\n    interval: 2s\n");
    let p = policy(&env, &[50, 100], &check, "");
    let report = env.path("report");
    let started = Instant::now();
    let run = env
        .cutover_on("run", &p, &env.path("state.json"))
        .arg("--report")
        .arg(&report)
        .finish(RUN_LIMIT)
        .await;
    let took = started.elapsed();
    writes.abort();
    assert_eq!(run.code, 3, "{}\n{}", run.output, pg.logs());
    assert!(
        took >= Duration::from_secs(20),
        "failed after {took:?}, before its wait"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(run.primary_history().is_empty(), "no weight written");
    assert_eq!(env.primary(), 0);
    assert!(run.output.contains("WAITING"), "{}", run.output);
    assert!(run.output.contains("above max_lag 5s"), "{}", run.output);
    assert!(run.output.contains("replay PAUSED"), "{}", run.output);
    assert_no_secret("the run's output", &run.output);
    assert_no_secret("the state", &run.state.to_string());
    assert_no_secret("the report", &report_text(&report));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let checks = &json["readiness"][0]["checks"][0];
    assert_eq!(checks["kind"], "postgres", "{json:#}");
    assert_eq!(checks["ok"], false, "{json:#}");
    assert!(checks["value"].as_f64().unwrap() > 5.0, "{json:#}");
    assert!(report_text(&report).contains("## Readiness"));
    let (code, plan) = cutover_tests::cli::cutover(&["plan", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{plan}");
    assert!(plan.contains("standby.conn"), "{plan}");
    assert_no_secret("`cutover plan`", &plan);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_resumed_during_the_wait_lets_the_run_start() {
    let pg = PgPair::start("lag-clears").await;
    let env = Env::with_prometheus("pg-lag-clears").await;
    pg.pause_replay(true).await;
    let writes = pg.keep_writing().await;
    lag_above(&pg, 6.0).await;
    let check = postgres_check(&pg, &env, "    wait: 60s\n    interval: 2s\n");
    let p = policy(&env, &[50, 100], &check, "");
    let mut run = env.cutover_on("run", &p, &env.path("state.json")).spawn();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(env.primary(), 0, "nothing written while the standby lags");
    assert!(run.try_exit().is_none(), "{}", run.output());
    pg.pause_replay(false).await;
    let run = run.wait_exit(RUN_LIMIT).await;
    writes.abort();
    assert_eq!(run.code, 0, "{}\n{}", run.output, pg.logs());
    assert_eq!(run.primary_history(), [50, 100]);
    assert!(run.output.contains("WAITING"), "{}", run.output);
    assert_no_secret("the run's output", &run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_growing_mid_run_holds_the_weight_and_clearing_it_lets_the_run_continue() {
    let pg = PgPair::start("lag-mid-run").await;
    let env = Env::with_prometheus("pg-lag-mid-run").await;
    let writes = pg.keep_writing().await;
    let guard = postgres_check(&pg, &env, "");
    let p = policy(&env, &[25, 50, 100], "", &format!("guards:\n{guard}"));
    let mut run = env.cutover_on("run", &p, &env.path("state.json")).spawn();
    wait_until("25%", Duration::from_secs(60), || env.primary() == 25).await;
    pg.pause_replay(true).await;
    lag_above(&pg, 6.0).await;
    // Held: longer than a bake (8 s) plus two intervals, the weight stays at 25 %.
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(20) {
        assert_eq!(
            env.primary(),
            25,
            "advanced while the standby lagged\n{}",
            run.output()
        );
        assert!(run.try_exit().is_none(), "{}", run.output());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pg.pause_replay(false).await;
    let run = run.wait_exit(RUN_LIMIT).await;
    writes.abort();
    assert_eq!(run.code, 0, "{}\n{}", run.output, pg.logs());
    assert_eq!(run.primary_history(), [25, 50, 100]);
    assert!(run.output.contains("holding at 25%"), "{}", run.output);
    assert!(
        run.output.contains("every guard holds again"),
        "{}",
        run.output
    );
    assert_no_secret("the run's output", &run.output);
    assert_no_secret("the state", &run.state.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server_against_the_ca_file() {
    let pg = PgPair::start("tls").await;
    let ca = pg.require_tls_on_standby();
    // A reload is asynchronous: wait until a connection without TLS is refused.
    let url = format!(
        "host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=postgres sslmode=disable",
        pg.standby_port
    );
    let start = Instant::now();
    while tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .is_ok()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the standby still accepts plain connections\n{}",
            pg.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dir = cutover_tests::TempDir::new("pg-tls");
    let conn = dir.path().join("standby.conn");
    std::fs::write(
        &conn,
        format!("host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=postgres sslmode=require", pg.standby_port),
    )
    .unwrap();
    let spec = |ca: &Path| {
        format!(
            "name: pg\npostgres: {{ primary_connection_file: {}, max_lag: 60s, ca_file: {} }}",
            conn.display(),
            ca.display()
        )
    };
    let r = check(&spec(&ca)).await;
    assert!(r.ok, "{r:?}\n{}", pg.logs());
    assert!(r.detail.contains("caught up"), "{r:?}");
    // Another CA: the server's certificate is not trusted, and nothing falls back to plain.
    let other = dir.path().join("other-ca.crt");
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(dir.path().join("other.key"))
        .arg("-out")
        .arg(&other)
        .args(["-days", "1", "-subj", "/CN=another CA"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let r = check(&spec(&other)).await;
    assert!(!r.ok && r.detail.contains("certificate"), "{r:?}");
    assert_no_secret("the check's result", &format!("{r:?}"));
}

/// The checks below need no metric source: their kinds ask their own servers.
struct NoSource;

#[async_trait::async_trait]
impl cutover_core::metrics::source::MetricSource for NoSource {
    fn describe(&self) -> String {
        "none".into()
    }
    fn render(&self, m: &cutover_core::Measure) -> String {
        format!("{m:?}")
    }
    async fn measure(
        &self,
        _: &cutover_core::Measure,
        _: std::time::SystemTime,
    ) -> Result<cutover_core::metrics::source::Sample, cutover_core::MetricError> {
        unreachable!("no query check here")
    }
}

/// Runs one check written as a policy's YAML list item.
async fn check(yaml: &str) -> cutover_core::judge::preflight::PreflightResult {
    let c: cutover_core::judge::preflight::PreflightCheck =
        serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"));
    cutover_analyzers::readiness::run_check(&NoSource, &c, std::time::SystemTime::now()).await
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    cutover_tests::free_port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_passes_a_caught_up_replica_and_fails_lag_a_wrong_leader_and_no_answer() {
    let api = PatroniApi::start(documented_cluster()).await;
    let spec = |leader: &str, url: &str| {
        format!(
            "name: patroni\npatroni: {{ url: '{url}', leader: '{leader}', max_lag_bytes: 1048576 }}"
        )
    };
    let r = check(&spec("^patroni1$", &api.url)).await;
    assert!(r.ok, "{r:?}");
    assert!(r.detail.contains("leader patroni1 leads"), "{r:?}");
    let r = check(&spec("^pg-primary-", &api.url)).await;
    assert!(
        !r.ok && r.detail.contains("not on the expected site"),
        "{r:?}"
    );
    api.set_member(1, "lag", serde_json::json!(52_428_800));
    let r = check(&spec("^patroni1$", &api.url)).await;
    assert!(
        !r.ok && r.detail.contains("above max_lag_bytes 1048576"),
        "{r:?}"
    );
    assert_eq!(r.value, Some(52_428_800.0));
    api.set_member(1, "lag", serde_json::json!("unknown"));
    let r = check(&spec("^patroni1$", &api.url)).await;
    assert!(
        !r.ok && r.detail.contains("unknown lag never holds"),
        "{r:?}"
    );
    api.set_member(1, "lag", serde_json::json!(0));
    api.set_member(1, "state", serde_json::json!("starting"));
    let r = check(&spec("^patroni1$", &api.url)).await;
    assert!(!r.ok && r.detail.contains("patroni2 is starting"), "{r:?}");
    let r = check(&spec("", &format!("http://127.0.0.1:{}", closed_port()))).await;
    assert!(!r.ok && r.detail.contains("unreachable"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cockroach_pcr_passes_a_recent_replicated_time_and_fails_lag_a_paused_stream_and_no_answer()
{
    let crdb = PgWire::start(VirtualCluster {
        name: "main".into(),
        data_state: "replicating".into(),
        replicated_time: timestamptz_ago(20),
    })
    .await;
    let dir = cutover_tests::TempDir::new("crdb");
    let conn = dir.path().join("crdb.conn");
    let spec = |port: u16| {
        std::fs::write(
            &conn,
            format!("host=127.0.0.1 port={port} user=root password={PASSWORD} sslmode=disable"),
        )
        .unwrap();
        format!(
            "name: crdb\ncockroach_pcr: {{ connection_file: {}, virtual_cluster: main, max_lag: 2m }}",
            conn.display()
        )
    };
    let r = check(&spec(crdb.port)).await;
    assert!(r.ok, "{r:?}");
    let lag = r.value.unwrap();
    assert!((19.0..40.0).contains(&lag), "{r:?}");
    crdb.set(|vc| vc.replicated_time = timestamptz_ago(300));
    let r = check(&spec(crdb.port)).await;
    assert!(!r.ok && r.detail.contains("above max_lag 2m"), "{r:?}");
    crdb.set(|vc| {
        vc.replicated_time = timestamptz_ago(5);
        vc.data_state = "replication paused".into();
    });
    let r = check(&spec(crdb.port)).await;
    assert!(!r.ok && r.detail.contains("not replicating"), "{r:?}");
    let r = check(&spec(closed_port())).await;
    assert!(!r.ok, "{r:?}");
    assert_no_secret("the check's result", &format!("{r:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_smoke_checks_status_body_and_reachability() {
    let env = Env::with_prometheus("http-smoke").await;
    let ready = format!("{}/-/ready", env.prom().url());
    let r = check(&format!(
        "name: smoke\nhttp: {{ url: '{ready}', body: 'Ready' }}"
    ))
    .await;
    assert!(r.ok, "{r:?}");
    let r = check(&format!(
        "name: smoke\nhttp: {{ url: '{ready}', body: '^healthy$' }}"
    ))
    .await;
    assert!(!r.ok && r.detail.contains("does not match"), "{r:?}");
    let r = check(&format!(
        "name: smoke\nhttp: {{ url: '{ready}', status: 204 }}"
    ))
    .await;
    assert!(
        !r.ok && r.detail.contains("status 200, expected 204"),
        "{r:?}"
    );
    let gone = format!("http://127.0.0.1:{}/healthz", closed_port());
    let r = check(&format!("name: smoke\nhttp: {{ url: '{gone}' }}")).await;
    assert!(!r.ok && r.detail.contains("unreachable"), "{r:?}");
}

fn deployment(namespace: &str, replicas: u32, ready: u32) -> serde_json::Value {
    let mut status = serde_json::json!({"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas});
    if ready > 0 {
        status["readyReplicas"] = ready.into();
        status["availableReplicas"] = ready.into();
    }
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": namespace, "generation": 1},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "api:1"}]}}},
        "status": status,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_at_30_percent_keeps_the_run_at_weights_it_covers_until_replicas_are_ready() {
    let env = Env::with_prometheus("capacity").await;
    let api = KubeApi::start(vec![deployment("primary", 10, 3), deployment("dr", 10, 10)]).await;
    let kubeconfig = env.path("kubeconfig");
    api.kubeconfig(&kubeconfig);
    // Every other kind rides along as a passing guard: each is checked at every analysis.
    let patroni = PatroniApi::start(documented_cluster()).await;
    let crdb = PgWire::start(VirtualCluster {
        name: "main".into(),
        data_state: "replicating".into(),
        replicated_time: timestamptz_ago(10),
    })
    .await;
    let conn = env.path("crdb.conn");
    std::fs::write(
        &conn,
        format!(
            "host=127.0.0.1 port={} user=root password={PASSWORD} sslmode=disable",
            crdb.port
        ),
    )
    .unwrap();
    let guards = format!(
        concat!(
            "guards:\n",
            "  - name: capacity\n",
            "    kubernetes_capacity: {{ primary: {{ namespace: primary, deployments: [api] }}, dr: {{ namespace: dr, deployments: [api] }} }}\n",
            "  - name: patroni\n    patroni: {{ url: '{}', leader: '^patroni1$', max_lag_bytes: 1048576 }}\n",
            "  - name: crdb\n    cockroach_pcr: {{ connection_file: {}, virtual_cluster: main, max_lag: 2m }}\n",
            "  - name: smoke\n    http: {{ url: '{}/-/ready' }}\n",
        ),
        patroni.url,
        conn.display(),
        env.prom().url()
    );
    let p = policy(&env, &[10, 25, 50, 100], "", &guards);
    let mut run = env
        .cutover_on("run", &p, &env.path("state.json"))
        .env("KUBECONFIG", &kubeconfig)
        .spawn();
    wait_until("25%", Duration::from_secs(60), || env.primary() == 25).await;
    // 30 % of DR's capacity covers 25 % but not 50 %: the run stays past a bake.
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(16) {
        assert_eq!(
            env.primary(),
            25,
            "wrote a weight capacity does not cover\n{}",
            run.output()
        );
        assert!(run.try_exit().is_none(), "{}", run.output());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    api.set_ready_replicas("primary", "api", 10);
    let run = run.wait_exit(RUN_LIMIT).await;
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 50, 100]);
    assert!(
        run.output.contains("covers 30% of traffic"),
        "{}",
        run.output
    );
    assert_no_secret("the run's output", &run.output);
}
