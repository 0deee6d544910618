//! End to end against a real Prometheus: `cutover run` with the file backend judges a
//! workload whose traffic follows the weights it writes.
//!
//! Given a Prometheus scraping the workload exporter every second,
//! when `cutover run` drives the policy,
//! then the exit code, the weights file and the persisted history say what happened.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cutover_tests::cli::{Finished, INTERVAL, policy_text, run_cutover};
use cutover_tests::exporter::{Behaviour, Exporter};
use cutover_tests::prometheus::Prometheus;
use cutover_tests::{TempDir, cutover_bin};

struct Env {
    dir: TempDir,
    exporter: Exporter,
    prom: Prometheus,
}

impl Env {
    async fn start(name: &str) -> Env {
        Self::start_with(name, 200.0).await
    }

    async fn start_with(name: &str, rps: f64) -> Env {
        let dir = TempDir::new(name);
        std::fs::write(weights_path(dir.path()), r#"{"primary":0,"dr":100}"#).unwrap();
        let exporter = Exporter::start(weights_path(dir.path()), rps).await;
        let prom = Prometheus::start(&[exporter.target()]).await;
        // Poll, never sleep a fixed time: the first scrape comes ~5 s after start.
        prom.wait_for_data(
            "sum(rate(http_requests_total{site=\"dr\"}[8s])) > 0",
            Duration::from_secs(40),
        )
        .await;
        Env {
            dir,
            exporter,
            prom,
        }
    }

    fn policy(&self, extra: &str, max_duration: &str) -> PathBuf {
        let backend = format!(
            "  file:\n    path: {}",
            weights_path(self.dir.path()).display()
        );
        let text = policy_text(
            &backend,
            &self.prom.url(),
            &[10, 25, 50, 100],
            max_duration,
            extra,
        );
        let p = self.dir.path().join("checkout.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The test policy with its gates replaced by sequential ones.
    fn sequential_policy(&self) -> PathBuf {
        let p = self.policy("", "90s");
        let text = std::fs::read_to_string(&p).unwrap();
        let (head, rest) = text.split_once("gates:\n").unwrap();
        let (_, tail) = rest.split_once("analysis:\n").unwrap();
        let gates = concat!(
            "gates:\n",
            "  - name: errors-vs-dr\n",
            "    error_rate: { vs_dr: { tolerance: 100%, alpha: 0.01 } }\n",
            "  - name: slow-vs-dr\n",
            "    latency: { above: 250ms, vs_dr: { tolerance: 100%, alpha: 0.01, absolute_tolerance: 1% } }\n",
        );
        std::fs::write(&p, format!("{head}{gates}analysis:\n{tail}")).unwrap();
        p
    }

    async fn run(&self, policy: &Path) -> Run {
        let state = self.dir.path().join("state.json");
        let f = run_cutover(
            &["run", policy.to_str().unwrap()],
            &state,
            &[],
            Duration::from_secs(180),
        )
        .await;
        Run {
            f,
            weights: std::fs::read_to_string(weights_path(self.dir.path())).unwrap(),
        }
    }
}

struct Run {
    f: Finished,
    weights: String,
}

impl std::ops::Deref for Run {
    type Target = Finished;
    fn deref(&self) -> &Finished {
        &self.f
    }
}

impl Run {
    fn primary_now(&self) -> u64 {
        serde_json::from_str::<serde_json::Value>(&self.weights).unwrap()["primary"]
            .as_u64()
            .unwrap()
    }
}

fn weights_path(dir: &Path) -> PathBuf {
    dir.join("weights.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_primary_is_promoted_to_100() {
    let env = Env::start("healthy").await;
    let run = env.run(&env.policy("", "60s")).await;
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 50, 100]);
    assert_eq!(run.primary_now(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_spike_at_25_is_rolled_back_within_three_intervals() {
    let env = Env::start("error-spike").await;
    env.exporter.on_weight(
        25,
        0,
        Behaviour {
            error_rate: 0.05,
            ..Behaviour::default()
        },
    );
    let run = env.run(&env.policy("", "60s")).await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 0]);
    assert_eq!(run.primary_now(), 0, "DR at 100%");
    let jump = env.exporter.changed_at().expect("the spike happened");
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
    let env = Env::start("latency").await;
    env.exporter.on_weight(
        50,
        0,
        Behaviour {
            latency_median: 0.1,
            ..Behaviour::default()
        },
    );
    let run = env.run(&env.policy("", "60s")).await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 50, 0]);
    assert!(run.output.contains("p99-latency"), "{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_without_traffic_never_advances_and_holds() {
    let env = Env::start("no-traffic").await;
    env.exporter.set(
        0,
        Behaviour {
            reachable: false,
            ..Behaviour::default()
        },
    );
    let run = env.run(&env.policy("", "16s")).await;
    assert_eq!(run.code, 5, "{}", run.output);
    assert_eq!(run.primary_history(), [10], "never advanced");
    assert!(run.output.contains("never settled"), "{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_killed_mid_run_holds_then_rolls_back() {
    let mut env = Env::start("prom-killed").await;
    let policy = env.policy("", "60s");
    let bin = cutover_bin();
    let state = env.dir.path().join("state.json");
    let mut child = tokio::process::Command::new(bin)
        .arg("run")
        .arg(&policy)
        .arg("--state-file")
        .arg(&state)
        .stdout(std::fs::File::create(env.dir.path().join("out.log")).unwrap())
        .stderr(std::fs::File::create(env.dir.path().join("err.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // When the run reaches 25 %, Prometheus dies.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while env.exporter.max_weight_seen() < 25 {
        assert!(std::time::Instant::now() < deadline, "never reached 25%");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.prom.kill();
    let killed = SystemTime::now();
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .expect("the run ends")
        .unwrap();
    // Text or JSON logs (stdout is not a terminal here): read both streams.
    let out = std::fs::read_to_string(env.dir.path().join("out.log")).unwrap()
        + &std::fs::read_to_string(env.dir.path().join("err.log")).unwrap();
    println!("{out}");
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("consecutive_error_limit"), "{out}");
    let weights = std::fs::read_to_string(weights_path(env.dir.path())).unwrap();
    assert!(weights.contains("\"primary\":0"), "{weights}");
    // Held (no advance) while Prometheus was down: the last stage written before the rollback is 25.
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let hist: Vec<u64> = st["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["weights"]["primary"].as_u64().unwrap())
        .collect();
    assert_eq!(hist, [10, 25, 0]);
    println!(
        "rolled back {:?} after Prometheus died",
        SystemTime::now().duration_since(killed).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_out_of_bounds_exits_3_and_touches_nothing() {
    let env = Env::start("preflight").await;
    env.exporter.set_gauge("pg_replication_lag_seconds", 120.0);
    env.prom
        .wait_for_data("pg_replication_lag_seconds > 100", Duration::from_secs(20))
        .await;
    let before = std::fs::metadata(weights_path(env.dir.path()))
        .unwrap()
        .modified()
        .unwrap();
    let run = env.run(&env.policy("", "60s")).await;
    assert_eq!(run.code, 3, "{}", run.output);
    assert_eq!(
        run.weights, r#"{"primary":0,"dr":100}"#,
        "weights untouched"
    );
    let after = std::fs::metadata(weights_path(env.dir.path()))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "the weights file was not even rewritten");
    assert!(run.output.contains("replication-lag"), "{}", run.output);
    assert!(run.output.contains("above max 60"), "{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_prints_promql_that_prometheus_accepts() {
    let env = Env::start("plan").await;
    let policy = env.policy("", "60s");
    let out = std::process::Command::new(cutover_bin())
        .arg("plan")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
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
        env.prom
            .query(q)
            .await
            .unwrap_or_else(|e| panic!("Prometheus refused the planned query: {e}"));
    }
}

/// Sequential gates on a real Prometheus: a healthy primary is certified stage by stage and
/// promoted — through a counter reset at both sites, which must not look like harm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_gates_promote_a_healthy_primary_through_a_counter_reset() {
    let env = Env::start_with("sequential-healthy", 1000.0).await;
    let both = Behaviour {
        error_rate: 0.02,
        ..Behaviour::default()
    };
    env.exporter.set(0, both);
    env.exporter.set(1, both);
    let policy = env.sequential_policy();
    let exporter = &env.exporter;
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
    let env = Env::start_with("sequential-harm", 1000.0).await;
    let base = Behaviour {
        error_rate: 0.02,
        ..Behaviour::default()
    };
    env.exporter.set(0, base);
    env.exporter.set(1, base);
    env.exporter.on_weight(
        25,
        0,
        Behaviour {
            error_rate: 0.10,
            ..base
        },
    );
    let run = env.run(&env.sequential_policy()).await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 0]);
    let jump = env.exporter.changed_at().expect("the regression happened");
    let took = run.last_change_at().duration_since(jump).unwrap();
    println!("rolled back {took:?} after the regression");
    assert!(took <= Duration::from_secs(3 * INTERVAL), "took {took:?}");
    assert!(
        run.output.contains("errors-vs-dr") && run.output.contains("evidence of harm"),
        "{}",
        run.output
    );
}
