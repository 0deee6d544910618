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
