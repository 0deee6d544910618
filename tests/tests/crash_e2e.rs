//! Crash safety end to end: kill -9 at random moments and restart (as Kubernetes restarts a
//! Job's pod), two runs on one service, a full disk, Prometheus down and back, secrets.
//!
//! Given a real Prometheus and workloads that follow the file backend's weights,
//! when `cutover run` is killed and restarted,
//! then it ends promoted or rolled back, only ever writes planned weights, never skips a
//! stage, and its persisted history is one continuous run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cutover_tests::cli::{INTERVAL, policy_text, policy_text_for, run_cutover};
use cutover_tests::exporter::{Behaviour, Exporter};
use cutover_tests::prometheus::Prometheus;
use cutover_tests::{TempDir, cutover_bin};
use rand::{Rng, SeedableRng};

const PLAN: [u8; 3] = [25, 50, 100];

/// Each step of `seq` (starting from 0) is the next stage, a repeat, or a fall to 0 that ends it.
fn follows_the_plan(seq: &[u8]) -> Result<(), String> {
    let mut prev = 0u8;
    let mut rolled_back = false;
    for &w in seq {
        if w == prev {
            continue;
        }
        if rolled_back {
            return Err(format!("{seq:?}: a weight after the rollback"));
        }
        if w == 0 {
            rolled_back = true;
        } else {
            let next = PLAN.iter().copied().find(|s| *s > prev);
            if Some(w) != next {
                return Err(format!(
                    "{seq:?}: {prev} -> {w} is not the plan's next step"
                ));
            }
        }
        prev = w;
    }
    Ok(())
}

fn weights_file(dir: &Path) -> PathBuf {
    dir.join("weights.json")
}

fn primary_in_file(dir: &Path) -> u64 {
    let t = std::fs::read_to_string(weights_file(dir)).unwrap();
    serde_json::from_str::<serde_json::Value>(&t).unwrap()["primary"]
        .as_u64()
        .unwrap()
}

/// One lane: `runs` cutovers of `service`, each killed 1–3 times at random moments.
async fn lane(
    service: String,
    prom_url: String,
    exporter: Exporter,
    dir: PathBuf,
    runs: usize,
    seed: u64,
) -> Vec<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut failures = Vec::new();
    let backend = format!("  file:\n    path: {}", weights_file(&dir).display());
    let policy = dir.join(format!("{service}.yaml"));
    std::fs::write(
        &policy,
        policy_text_for(&service, &backend, &prom_url, &PLAN, "60s", ""),
    )
    .unwrap();
    let state = dir.join("state.json");
    for n in 0..runs {
        exporter.reset();
        std::fs::write(weights_file(&dir), r#"{"primary":0,"dr":100}"#).unwrap();
        let _ = std::fs::remove_file(&state);
        // Let the windows forget the previous run.
        tokio::time::sleep(Duration::from_secs(9)).await;
        let breach = rng.random_bool(0.25);
        if breach {
            exporter.on_weight(
                50,
                0,
                Behaviour {
                    error_rate: 0.05,
                    ..Behaviour::default()
                },
            );
        }
        let mut kills_left = rng.random_range(1..=3u32);
        let mut kills = Vec::new();
        let code = loop {
            let mut child = tokio::process::Command::new(cutover_bin())
                .args(["--log-format", "json", "run"])
                .arg(&policy)
                .arg("--state-file")
                .arg(&state)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            if kills_left > 0 {
                let after = Duration::from_millis(rng.random_range(200..12_000));
                match tokio::time::timeout(after, child.wait()).await {
                    Ok(status) => break status.unwrap().code().unwrap_or(-1),
                    Err(_) => {
                        child.start_kill().unwrap();
                        let _ = child.wait().await;
                        kills.push(after);
                        kills_left -= 1;
                        continue;
                    }
                }
            }
            match tokio::time::timeout(Duration::from_secs(150), child.wait()).await {
                Ok(status) => break status.unwrap().code().unwrap_or(-1),
                Err(_) => break -2,
            }
        };
        // Let the 20 ms watcher see the last write before reading what it saw.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let observed = exporter.observed_weights();
        let st: serde_json::Value = std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let history: Vec<u8> = st["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(|c| c["weights"]["primary"].as_u64())
                    .map(|w| w as u8)
                    .collect()
            })
            .unwrap_or_default();
        let final_primary = primary_in_file(&dir);
        let mut problems = Vec::new();
        let expected = if breach { (1, 0) } else { (0, 100) };
        if (code, final_primary) != expected {
            problems.push(format!(
                "ended with exit {code} at primary {final_primary}%, expected {expected:?}"
            ));
        }
        if let Err(e) = follows_the_plan(&observed) {
            problems.push(format!("weights seen: {e}"));
        }
        if let Err(e) = follows_the_plan(&history) {
            problems.push(format!("history: {e}"));
        }
        let observed_changes: Vec<u8> = observed.iter().copied().skip_while(|w| *w == 0).collect();
        let mut dedup = history.clone();
        dedup.dedup();
        if dedup != observed_changes {
            problems.push(format!(
                "history {history:?} is not the weights seen {observed:?}"
            ));
        }
        println!(
            "{service} run {n}: breach={breach} kills at {kills:?} -> exit {code}, seen {observed:?}, history {history:?}, restarts {}",
            st["restarts"]
        );
        if !problems.is_empty() {
            failures.push(format!(
                "{service} run {n} (breach {breach}, kills {kills:?}): {}",
                problems.join("; ")
            ));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_9_at_random_moments_thirty_times() {
    const LANES: usize = 3;
    const RUNS: usize = 10;
    let dirs: Vec<TempDir> = (0..LANES)
        .map(|i| TempDir::new(&format!("kill{i}")))
        .collect();
    let mut exporters = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        std::fs::write(weights_file(d.path()), r#"{"primary":0,"dr":100}"#).unwrap();
        exporters
            .push(Exporter::start_for(&format!("lane{i}"), weights_file(d.path()), 200.0).await);
    }
    let targets: Vec<String> = exporters.iter().map(Exporter::target).collect();
    let prom = Prometheus::start(&targets).await;
    prom.wait_for_data(
        "count(sum by (service) (rate(http_requests_total{site=\"dr\"}[8s])) > 0) == 3",
        Duration::from_secs(40),
    )
    .await;
    let mut lanes = Vec::new();
    for (i, (d, e)) in dirs.iter().zip(exporters).enumerate() {
        lanes.push(tokio::spawn(lane(
            format!("lane{i}"),
            prom.url(),
            e,
            d.path().to_path_buf(),
            RUNS,
            1000 + i as u64,
        )));
    }
    let mut failures = Vec::new();
    for l in lanes {
        failures.extend(l.await.unwrap());
    }
    let total = LANES * RUNS;
    println!("kill -9 runs: {}/{total} passed", total - failures.len());
    assert!(
        failures.is_empty(),
        "{} of {total} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

struct Single {
    dir: TempDir,
    exporter: Exporter,
    prom: Prometheus,
}

impl Single {
    async fn start(name: &str) -> Single {
        let dir = TempDir::new(name);
        std::fs::write(weights_file(dir.path()), r#"{"primary":0,"dr":100}"#).unwrap();
        let exporter = Exporter::start(weights_file(dir.path()), 200.0).await;
        let prom = Prometheus::start(&[exporter.target()]).await;
        prom.wait_for_data(
            "sum(rate(http_requests_total{site=\"dr\"}[8s])) > 0",
            Duration::from_secs(40),
        )
        .await;
        Single {
            dir,
            exporter,
            prom,
        }
    }

    fn policy(&self, extra: &str) -> PathBuf {
        let backend = format!(
            "  file:\n    path: {}",
            weights_file(self.dir.path()).display()
        );
        let p = self.dir.path().join("checkout.yaml");
        std::fs::write(
            &p,
            policy_text(&backend, &self.prom.url(), &PLAN, "60s", extra),
        )
        .unwrap();
        p
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_service_refuses_naming_the_holder() {
    let env = Single::start("two-runs").await;
    let policy = env.policy("");
    let state = env.dir.path().join("state.json");
    let mut first = tokio::process::Command::new(cutover_bin())
        .arg("run")
        .arg(&policy)
        .arg("--state-file")
        .arg(&state)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The lock is the weights file's, beside it, whatever the state file.
    let lock = env.dir.path().join("weights.json.cutover-lock");
    let holder = || -> serde_json::Value {
        std::fs::read(&lock)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|v| v["holder"].clone())
            .unwrap_or(serde_json::Value::Null)
    };
    for _ in 0..100 {
        if !holder().is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another state file (another working directory's default): the object's lock refuses.
    let second = run_cutover(
        &["run", policy.to_str().unwrap()],
        &env.dir.path().join("elsewhere/state.json"),
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(second.code, 2, "{}", second.output);
    let pid = first.id().unwrap();
    assert!(
        second.output.contains(&format!("pid {pid}")),
        "names the holder: {}",
        second.output
    );
    // The first one drives the service to the end, undisturbed.
    let status = tokio::time::timeout(Duration::from_secs(150), first.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(primary_in_file(env.dir.path()), 100);
    assert!(holder().is_null(), "the lock is released at the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_for_the_state_file_is_a_clear_error_and_changes_nothing() {
    let env = Single::start("disk-full").await;
    let state = env.dir.path().join("state.json");
    // Every write of the state goes to /dev/full: "No space left on device".
    std::os::unix::fs::symlink("/dev/full", env.dir.path().join("state.json.tmp")).unwrap();
    let run = run_cutover(
        &["run", env.policy("").to_str().unwrap()],
        &state,
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.output);
    assert!(
        run.output.contains("No space left on device"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("state.json"),
        "names the file: {}",
        run.output
    );
    assert_eq!(
        std::fs::read_to_string(weights_file(env.dir.path())).unwrap(),
        r#"{"primary":0,"dr":100}"#
    );
    assert_eq!(
        env.exporter.observed_weights(),
        [0],
        "no weight ever changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_for_a_while_then_back_does_not_fail_the_run() {
    let mut env = Single::start("prom-flap").await;
    let policy = env.policy("");
    let state = env.dir.path().join("state.json");
    let mut child = tokio::process::Command::new(cutover_bin())
        .arg("run")
        .arg(&policy)
        .arg("--state-file")
        .arg(&state)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if env.exporter.max_weight_seen() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.prom.kill();
    // Down for one interval: fewer failed analyses in a row than consecutive_error_limit.
    tokio::time::sleep(Duration::from_secs(INTERVAL)).await;
    env.prom.restart().await;
    let status = tokio::time::timeout(Duration::from_secs(150), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "promoted after Prometheus came back"
    );
    assert_eq!(primary_in_file(env.dir.path()), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_state_or_plans() {
    let dir = TempDir::new("secrets");
    std::fs::write(weights_file(dir.path()), r#"{"primary":0,"dr":100}"#).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-SECRET-0001").unwrap();
    let backend = format!("  file:\n    path: {}", weights_file(dir.path()).display());
    let port = cutover_tests::free_port();
    let extra = "notify:\n  - webhook: https://hooks.example.com/services/T0/B0/SECRET-hook-0002\n";
    let mut text = policy_text(
        &backend,
        &format!("http://ops:SECRET-pass-0003@127.0.0.1:{port}"),
        &PLAN,
        "60s",
        extra,
    );
    text = text.replace(
        "  timeout: 2s\n",
        &format!("  timeout: 2s\n  bearer_token_file: {}\n", token.display()),
    );
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, text).unwrap();
    let state = dir.path().join("state.json");
    let env = [("RUST_LOG", "trace")];
    let run = run_cutover(
        &["run", policy.to_str().unwrap()],
        &state,
        &env,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        run.code, 3,
        "Prometheus is not there: preflight fails\n{}",
        run.output
    );
    let plan = std::process::Command::new(cutover_bin())
        .arg("plan")
        .arg(&policy)
        .output()
        .unwrap();
    let everything = format!(
        "{}{}{}{}",
        run.output,
        std::fs::read_to_string(&state).unwrap_or_default(),
        String::from_utf8_lossy(&plan.stdout),
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(
        everything.contains("127.0.0.1"),
        "the output is there to check"
    );
    for secret in ["SECRET-0001", "SECRET-hook-0002", "SECRET-pass-0003"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
}

#[test]
fn the_plan_checker_itself() {
    assert!(follows_the_plan(&[0, 25, 50, 100]).is_ok());
    assert!(follows_the_plan(&[0, 25, 25, 50, 0]).is_ok());
    assert!(follows_the_plan(&[0, 50]).is_err());
    assert!(follows_the_plan(&[0, 25, 0, 25]).is_err());
    assert!(follows_the_plan(&[0, 30]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_holds_at_a_planned_weight_and_the_next_pod_resumes() {
    let env = Single::start("sigterm").await;
    let policy = env.policy("");
    let state = env.dir.path().join("state.json");
    let spawn = || {
        tokio::process::Command::new(cutover_bin())
            .arg("run")
            .arg(&policy)
            .arg("--state-file")
            .arg(&state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut first = spawn();
    for _ in 0..600 {
        if env.exporter.max_weight_seen() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What Kubernetes sends a pod it evicts.
    let pid = first.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), first.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(4), "aborted");
    assert_eq!(
        primary_in_file(env.dir.path()),
        50,
        "held at a planned weight (on_signal: hold)"
    );
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(st["phase"], "aborted");
    let status = tokio::time::timeout(Duration::from_secs(150), spawn().wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "the next pod resumed and promoted");
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(st["restarts"], 1);
    assert_eq!(primary_in_file(env.dir.path()), 100);
}

fn state_phase(state: &Path) -> String {
    std::fs::read(state)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Polls `cond` every 50 ms for at most `limit`; panics with `what` if it never holds.
async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spawn_run(policy: &Path, state: &Path, log: &Path) -> tokio::process::Child {
    tokio::process::Command::new(cutover_bin())
        .args(["--log-format", "json", "run"])
        .arg(policy)
        .arg("--state-file")
        .arg(state)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_rollback_brakes_a_live_run_at_each_phase_and_nothing_writes_forward_again() {
    let env = Single::start("brake").await;
    let policy = env.policy("");
    let dir = env.dir.path().to_path_buf();
    for (i, moment) in ["settling", "judging", "stage 2"].into_iter().enumerate() {
        std::fs::write(weights_file(&dir), r#"{"primary":0,"dr":100}"#).unwrap();
        let state = dir.join(format!("brake-{i}.json"));
        let log = dir.join(format!("brake-{i}.log"));
        // Given a live run at this moment,
        let mut run = spawn_run(&policy, &state, &log);
        let d = dir.clone();
        let s = state.clone();
        wait_until(moment, Duration::from_secs(60), move || match moment {
            "settling" => primary_in_file(&d) == 25 && state_phase(&s) == "settling",
            "judging" => primary_in_file(&d) == 25 && state_phase(&s) == "judging",
            _ => primary_in_file(&d) == 50,
        })
        .await;
        // (`cutover status` names the run holding the object's lock),
        let status = run_cutover(
            &["status", policy.to_str().unwrap()],
            &state,
            &[],
            Duration::from_secs(30),
        )
        .await;
        assert!(
            status.output.contains("lock:   held by run checkout-")
                && status
                    .output
                    .contains(&format!("pid {}", run.id().unwrap())),
            "{moment}: {}",
            status.output
        );
        // when the operator pulls the brake,
        let rb = run_cutover(
            &["rollback", policy.to_str().unwrap(), "--watch", "30s"],
            &state,
            &[],
            Duration::from_secs(90),
        )
        .await;
        assert_eq!(rb.code, 0, "{moment}: {}", rb.output);
        assert!(rb.output.contains("braked:"), "{moment}: {}", rb.output);
        // then traffic is on DR and stays there, and the run ends as the operator's rollback.
        let d = dir.clone();
        let watcher = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..200 {
                seen.push(primary_in_file(&d));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        });
        let status = tokio::time::timeout(Duration::from_secs(60), run.wait())
            .await
            .expect("the braked run stops")
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(status.code(), Some(4), "{moment}: {text}");
        let recorded: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        assert_eq!(recorded["phase"], "aborted", "{moment}");
        assert!(
            recorded["outcome"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("operator rollback"),
            "{moment}: {}",
            recorded["outcome"]
        );
        // A restarted pod of that run does not write forward.
        let again = run_cutover(
            &["run", policy.to_str().unwrap()],
            &state,
            &[],
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(again.code, 4, "{moment}: {}", again.output);
        let seen = watcher.await.unwrap();
        assert!(
            seen.iter().all(|w| *w == 0),
            "{moment}: traffic stays on DR: {seen:?}"
        );
        assert_eq!(primary_in_file(&dir), 0, "{moment}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_interference_is_reported_within_one_interval_and_nothing_advances() {
    let env = Single::start("drift").await;
    // Stage 1 would pass after its 8 s bake; undecided stages end at 30 s.
    let text = std::fs::read_to_string(env.policy("")).unwrap();
    let policy = env.dir.path().join("drift.yaml");
    std::fs::write(
        &policy,
        text.replace("max_duration: 60s", "max_duration: 30s"),
    )
    .unwrap();
    let dir = env.dir.path().to_path_buf();
    let cases: [(&str, &str); 3] = [
        (
            "a weight the plan does not name",
            "{\"primary\":33,\"dr\":67}",
        ),
        ("a garbage file", "this is not json"),
        ("a deleted file", ""),
    ];
    for (i, (what, content)) in cases.into_iter().enumerate() {
        std::fs::write(weights_file(&dir), r#"{"primary":0,"dr":100}"#).unwrap();
        let state = dir.join(format!("drift-{i}.json"));
        let log = dir.join(format!("drift-{i}.log"));
        let mut run = spawn_run(&policy, &state, &log);
        let (d, s) = (dir.clone(), state.clone());
        wait_until("judging stage 1", Duration::from_secs(60), move || {
            primary_in_file(&d) == 25 && state_phase(&s) == "judging"
        })
        .await;
        if content.is_empty() {
            std::fs::remove_file(weights_file(&dir)).unwrap();
        } else {
            std::fs::write(weights_file(&dir), content).unwrap();
        }
        let at = std::time::Instant::now();
        let l = log.clone();
        wait_until(
            &format!("{what}: a drift event"),
            Duration::from_secs(INTERVAL + 4),
            move || {
                std::fs::read_to_string(&l)
                    .unwrap_or_default()
                    .contains("DRIFT")
            },
        )
        .await;
        let within = at.elapsed();
        let status = tokio::time::timeout(Duration::from_secs(90), run.wait())
            .await
            .expect("the run ends")
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(status.code(), Some(5), "{what}: held, not advanced: {text}");
        let recorded: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        let history: Vec<u64> = recorded["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["weights"]["primary"].as_u64().unwrap())
            .collect();
        assert_eq!(history, [25], "{what}: nothing advances past a drift");
        assert!(
            recorded["outcome"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("drift"),
            "{what}: {}",
            recorded["outcome"]
        );
        println!("{what}: reported {within:?} after the change");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_to_resume_a_run_someone_rolled_back_holds_at_every_retry() {
    let env = Single::start("sticky-refusal").await;
    let policy = env.policy("");
    let dir = env.dir.path().to_path_buf();
    let state = dir.join("state.json");
    let log = dir.join("first.log");
    // Given a run at stage 1, killed, and all traffic put back on DR by hand,
    let mut run = spawn_run(&policy, &state, &log);
    let (d, s) = (dir.clone(), state.clone());
    wait_until("stage 1", Duration::from_secs(60), move || {
        primary_in_file(&d) == 25 && state_phase(&s) == "judging"
    })
    .await;
    run.start_kill().unwrap();
    let _ = run.wait().await;
    std::fs::write(weights_file(&dir), r#"{"primary":0,"dr":100}"#).unwrap();
    // when the Job's pod is retried again and again,
    for attempt in 0..3 {
        let again = run_cutover(
            &["run", policy.to_str().unwrap()],
            &state,
            &[],
            Duration::from_secs(60),
        )
        .await;
        // then every retry refuses, and no cutover starts on the rolled-back service.
        assert_eq!(again.code, 3, "attempt {attempt}: {}", again.output);
        assert!(
            again.output.contains("someone rolled back"),
            "attempt {attempt}: {}",
            again.output
        );
        assert_eq!(primary_in_file(&dir), 0, "attempt {attempt}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_signal_a_stepped_rollback_still_waits_between_its_steps() {
    let env = Single::start("signal-steps").await;
    let policy =
        env.policy("on_signal: rollback\nrollback:\n  mode: stepped\n  step_interval: 3s\n");
    let dir = env.dir.path().to_path_buf();
    let (state, log) = (dir.join("state.json"), dir.join("run.log"));
    // Given a run at stage 2 (50 %) whose policy rolls back in steps on a signal,
    let mut run = spawn_run(&policy, &state, &log);
    let d = dir.clone();
    wait_until("stage 2", Duration::from_secs(60), move || {
        primary_in_file(&d) == 50
    })
    .await;
    // when SIGINT arrives,
    let pid = run.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let start = std::time::Instant::now();
    let mut changes: Vec<(Duration, u64)> = vec![(Duration::ZERO, 50)];
    let status = loop {
        if let Ok(Some(s)) = run.try_wait() {
            // The last write may land just before the exit: read it once more.
            let w = primary_in_file(&dir);
            if changes.last().map(|c| c.1) != Some(w) {
                changes.push((start.elapsed(), w));
            }
            break s;
        }
        let w = primary_in_file(&dir);
        if changes.last().map(|c| c.1) != Some(w) {
            changes.push((start.elapsed(), w));
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{changes:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // then it walks 50 -> 25 -> 0 with step_interval between the steps, and exits 4.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(4), "{text}");
    let seq: Vec<u64> = changes.iter().map(|c| c.1).collect();
    assert_eq!(seq, [50, 25, 0], "{changes:?}\n{text}");
    let gap = changes[2].0 - changes[1].0;
    assert!(
        gap >= Duration::from_millis(2500),
        "the steps are step_interval (3 s) apart, not at once: {changes:?}"
    );
}
