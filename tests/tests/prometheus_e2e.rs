//! End to end against a real Prometheus: `cutover run` with the file backend judges a
//! workload whose traffic follows the weights it writes.
//!
//! Given a Prometheus scraping the workload exporter every second,
//! when `cutover run` drives the policy,
//! then the exit code, the weights file and the persisted history say what happened.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use cutover_tests::cli::INTERVAL;
use cutover_tests::env::{Env, RUN_LIMIT};
use cutover_tests::exporter::Behaviour;
use cutover_tests::wait_until;

/// The test policy with its gates replaced by sequential ones.
fn sequential_policy(env: &Env) -> PathBuf {
    sequential_policy_with(env, "90s", "")
}

/// [`sequential_policy`] with every stage's `max_duration` and extra `analysis:` lines.
fn sequential_policy_with(env: &Env, max_duration: &str, analysis: &str) -> PathBuf {
    let text = env.policy().max_duration(max_duration).text();
    let (head, rest) = text.split_once("gates:\n").unwrap();
    let (_, tail) = rest.split_once("analysis:\n").unwrap();
    let gates = concat!(
        "gates:\n",
        "  - name: errors-vs-dr\n",
        "    error_rate: { vs_dr: { tolerance: 100%, alpha: 0.01 } }\n",
        "  - name: slow-vs-dr\n",
        "    latency: { above: 250ms, vs_dr: { tolerance: 100%, alpha: 0.01, absolute_tolerance: 1% } }\n",
    );
    let p = env.path("checkout.yaml");
    std::fs::write(&p, format!("{head}{gates}analysis:\n{analysis}{tail}")).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_primary_is_promoted_to_100() {
    let env = Env::with_prometheus("healthy").await;
    let run = env.run(&env.policy().write()).await;
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 50, 100]);
    assert_eq!(env.primary(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_spike_at_25_is_rolled_back_within_three_intervals() {
    let env = Env::with_prometheus("error-spike").await;
    env.exporter().on_weight(
        25,
        0,
        Behaviour {
            error_rate: 0.05,
            ..Behaviour::default()
        },
    );
    let run = env.run(&env.policy().write()).await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 0]);
    assert_eq!(env.primary(), 0, "DR at 100%");
    let jump = env.exporter().changed_at().expect("the spike happened");
    let took = run.last_change_at().duration_since(jump).unwrap();
    println!("rolled back {took:?} after the error spike");
    assert!(took <= Duration::from_secs(3 * INTERVAL), "took {took:?}");
    assert!(
        run.output.contains("error-rate"),
        "the breaching gate is named"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p99_doubling_past_the_gate_is_rolled_back() {
    let env = Env::with_prometheus("latency").await;
    env.exporter().on_weight(
        50,
        0,
        Behaviour {
            latency_median: 0.1,
            ..Behaviour::default()
        },
    );
    let run = env.run(&env.policy().write()).await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 50, 0]);
    assert!(run.output.contains("p99-latency"), "{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_without_traffic_never_advances_and_holds() {
    let env = Env::with_prometheus("no-traffic").await;
    env.exporter().set(
        0,
        Behaviour {
            reachable: false,
            ..Behaviour::default()
        },
    );
    let run = env.run(&env.policy().max_duration("16s").write()).await;
    assert_eq!(run.code, 5, "{}", run.output);
    assert_eq!(run.primary_history(), [10], "never advanced");
    assert!(run.output.contains("never settled"), "{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_killed_mid_run_holds_then_rolls_back() {
    let mut env = Env::with_prometheus("prom-killed").await;
    let policy = env.policy().write();
    let state = env.path("state.json");
    let mut run = env.cutover_on("run", &policy, &state).spawn();
    // When the run reaches 25 %, Prometheus dies.
    wait_until("25%", Duration::from_secs(90), || {
        env.exporter().max_weight_seen() >= 25
    })
    .await;
    env.prom_mut().kill();
    let killed = SystemTime::now();
    let run = run.wait_exit(Duration::from_secs(90)).await;
    // Text or JSON logs (stdout is not a terminal here): both streams are in the output.
    assert_eq!(run.code, 1, "{}", run.output);
    assert!(
        run.output.contains("consecutive_error_limit"),
        "{}",
        run.output
    );
    assert!(env.weights().contains("\"primary\":0"), "{}", env.weights());
    // Held (no advance) while Prometheus was down: the last stage written before the rollback is 25.
    assert_eq!(run.primary_history(), [10, 25, 0]);
    println!(
        "rolled back {:?} after Prometheus died",
        SystemTime::now().duration_since(killed).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_out_of_bounds_exits_3_and_touches_nothing() {
    let env = Env::with_prometheus("preflight").await;
    env.exporter()
        .set_gauge("pg_replication_lag_seconds", 120.0);
    env.prom()
        .wait_for_data("pg_replication_lag_seconds > 100", Duration::from_secs(20))
        .await;
    let modified = || {
        std::fs::metadata(env.weights_file())
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = modified();
    let run = env.run(&env.policy().write()).await;
    assert_eq!(run.code, 3, "{}", run.output);
    assert_eq!(
        env.weights(),
        r#"{"primary":0,"dr":100}"#,
        "weights untouched"
    );
    let after = modified();
    assert_eq!(before, after, "the weights file was not even rewritten");
    assert!(run.output.contains("replication-lag"), "{}", run.output);
    assert!(run.output.contains("above max 60"), "{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_prints_promql_that_prometheus_accepts() {
    let env = Env::with_prometheus("plan").await;
    let plan = env
        .cutover(["plan"])
        .arg(env.policy().write())
        .finish(RUN_LIMIT)
        .await;
    assert_eq!(plan.code, 0, "{}", plan.output);
    let text = plan.output;
    let expected = r#"(sum(rate(http_requests_total{service="checkout",site="primary",status=~"5.."}[8s])) or vector(0)) / sum(rate(http_requests_total{service="checkout",site="primary"}[8s]))"#;
    assert!(text.contains(expected), "{text}");
    let queries: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            ["primary ", "dr ", "requests "]
                .iter()
                .find_map(|p| l.strip_prefix(p))
                .map(str::trim)
        })
        .collect();
    assert!(queries.len() >= 12, "{queries:?}");
    for q in queries {
        env.prom()
            .query(q)
            .await
            .unwrap_or_else(|e| panic!("Prometheus refused the planned query: {e}"));
    }
}

/// Sequential gates on a real Prometheus: a healthy primary is certified stage by stage and
/// promoted — through a counter reset at both sites, which must not look like harm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_gates_promote_a_healthy_primary_through_a_counter_reset() {
    let env = Env::builder("sequential-healthy").rps(1000.0).start().await;
    let both = Behaviour {
        error_rate: 0.02,
        ..Behaviour::default()
    };
    env.exporter().set(0, both);
    env.exporter().set(1, both);
    let policy = sequential_policy(&env);
    let exporter = env.exporter();
    let restarts = async {
        // Restart both sites' "pods" once the primary reaches 25 %.
        for _ in 0..1200 {
            if exporter.max_weight_seen() >= 25 {
                exporter.restart_site(0);
                exporter.restart_site(1);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    let (run, restarted) = tokio::join!(env.run(&policy), restarts);
    assert_eq!(run.code, 0, "{}", run.output);
    assert!(restarted, "the counters were reset during the run");
    assert_eq!(run.primary_history(), [10, 25, 50, 100]);
    assert!(
        run.output.contains("certified"),
        "the log says why each stage advanced:\n{}",
        run.output
    );
}

/// Sequential gates on a real Prometheus: errors 2 % -> 10 % at 25 % are rolled back on
/// evidence of harm, without waiting for a failure count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_gates_roll_back_on_evidence_of_harm() {
    let env = Env::builder("sequential-harm").rps(1000.0).start().await;
    let base = Behaviour {
        error_rate: 0.02,
        ..Behaviour::default()
    };
    env.exporter().set(0, base);
    env.exporter().set(1, base);
    env.exporter().on_weight(
        25,
        0,
        Behaviour {
            error_rate: 0.10,
            ..base
        },
    );
    let run = env.run(&sequential_policy(&env)).await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 0]);
    let jump = env
        .exporter()
        .changed_at()
        .expect("the regression happened");
    let took = run.last_change_at().duration_since(jump).unwrap();
    println!("rolled back {took:?} after the regression");
    assert!(took <= Duration::from_secs(3 * INTERVAL), "took {took:?}");
    assert!(
        run.output.contains("errors-vs-dr") && run.output.contains("evidence of harm"),
        "{}",
        run.output
    );
}

/// Both sites' errors rise 2 % -> 8 % once the primary serves 100 % (a shared cause): the
/// sequential gates see the primary above DR's earlier rate, probe at 50 % against DR's
/// concurrent traffic on a real Prometheus, find it no worse and go back to 100 %; the
/// stage is then held (not certified against DR's earlier rate), never rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_gates_probe_a_common_rise_at_100_and_never_roll_it_back() {
    let env = Env::builder("sequential-common-rise")
        .rps(1000.0)
        .start()
        .await;
    let base = Behaviour {
        error_rate: 0.02,
        ..Behaviour::default()
    };
    let risen = Behaviour {
        error_rate: 0.08,
        ..base
    };
    env.exporter().set(0, base);
    env.exporter().set(1, base);
    env.exporter().on_weight(100, 0, risen);
    env.exporter().on_weight(100, 1, risen);
    let policy = sequential_policy_with(&env, "60s", "  watch_held: 0s\n  probe: 20s\n");
    let run = env.run(&policy).await;
    assert_eq!(run.code, 5, "held, not rolled back:\n{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 50, 100, 50, 100]);
    assert_eq!(env.primary(), 100);
    assert!(
        run.output.contains("PROBE") && run.output.contains("probe ok"),
        "the log says what the probe did:\n{}",
        run.output
    );
}

/// The primary alone goes 2 % -> 10 % at 100 %: the probe at 50 % sees it against DR's
/// concurrent traffic and rolls back from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_gates_probe_then_roll_back_a_regression_at_100() {
    let env = Env::builder("sequential-probe-harm")
        .rps(1000.0)
        .start()
        .await;
    let base = Behaviour {
        error_rate: 0.02,
        ..Behaviour::default()
    };
    env.exporter().set(0, base);
    env.exporter().set(1, base);
    env.exporter().on_weight(
        100,
        0,
        Behaviour {
            error_rate: 0.10,
            ..base
        },
    );
    let policy = sequential_policy_with(&env, "60s", "  probe: 20s\n");
    let run = env.run(&policy).await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 50, 100, 50, 0]);
    assert_eq!(env.primary(), 0, "DR at 100%");
    let jump = env
        .exporter()
        .changed_at()
        .expect("the regression happened");
    let took = run.last_change_at().duration_since(jump).unwrap();
    println!("rolled back {took:?} after the regression at 100 %");
    assert!(took <= Duration::from_secs(60), "took {took:?}");
    assert!(run.output.contains("PROBE"), "{}", run.output);
}
