//! Crash safety end to end: kill -9 at random moments and restart (as Kubernetes restarts a
//! Job's pod), two runs on one service, a full disk, Prometheus down and back, secrets.
//!
//! Given a real Prometheus and workloads that follow the file backend's weights,
//! when `cutover run` is killed and restarted,
//! then it ends promoted or rolled back, only ever writes planned weights, never skips a
//! stage, and its persisted history is one continuous run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cutover_tests::cli::{INTERVAL, Policy, file_backend, primary_history};
use cutover_tests::env::Env;
use cutover_tests::exporter::{Behaviour, Exporter};
use cutover_tests::logs::Logs;
use cutover_tests::prometheus::Prometheus;
use cutover_tests::{ALL_ON_DR, TempDir, primary_in, read_json, wait_until};
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
    let policy = Policy::new(
        dir.join(format!("{service}.yaml")),
        &file_backend(&weights_file(&dir)),
        &prom_url,
    )
    .service(&service)
    .stages(&PLAN)
    .write();
    let state = dir.join("state.json");
    for n in 0..runs {
        exporter.reset();
        std::fs::write(weights_file(&dir), ALL_ON_DR).unwrap();
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
        // This run's processes; their output is shown if the run goes wrong.
        let logs = Logs::new(&format!("{service}-{n}"));
        let mut kills_left = rng.random_range(1..=3u32);
        let mut kills = Vec::new();
        let code = loop {
            let mut child = logs
                .cutover(["--log-format", "json", "run"])
                .arg(&policy)
                .state_file(&state)
                .spawn();
            if kills_left > 0 {
                let after = Duration::from_millis(rng.random_range(200..12_000));
                match child.exit_within(after).await {
                    Some(code) => break code,
                    None => {
                        child.kill().await;
                        kills.push(after);
                        kills_left -= 1;
                        continue;
                    }
                }
            }
            match child.exit_within(Duration::from_secs(150)).await {
                Some(code) => break code,
                None => break -2,
            }
        };
        // Let the 20 ms watcher see the last write before reading what it saw.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let observed = exporter.observed_weights();
        let st = read_json(&state);
        let history: Vec<u8> = primary_history(&st).into_iter().map(|w| w as u8).collect();
        let final_primary = primary_in(&weights_file(&dir));
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
            // The test fails at the end: show what this run's processes said.
            logs.print();
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
        std::fs::write(weights_file(d.path()), ALL_ON_DR).unwrap();
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

/// The lock of a file backend: beside the weights file, whatever the state file.
fn lock_holder(env: &Env) -> serde_json::Value {
    read_json(&env.path("weights.json.cutover-lock"))["holder"].clone()
}

fn state_phase(state: &Path) -> String {
    read_json(state)["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_service_refuses_naming_the_holder() {
    let env = Env::with_prometheus("two-runs").await;
    let policy = env.policy().stages(&PLAN).write();
    let mut first = env
        .cutover_on("run", &policy, &env.path("state.json"))
        .spawn();
    // The lock is the weights file's, beside it, whatever the state file.
    for _ in 0..100 {
        if !lock_holder(&env).is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another state file (another working directory's default): the object's lock refuses.
    let second = env
        .cutover_on("run", &policy, &env.path("elsewhere/state.json"))
        .finish(Duration::from_secs(30))
        .await;
    assert_eq!(second.code, 2, "{}", second.output);
    assert!(
        second.output.contains(&format!("pid {}", first.pid())),
        "names the holder: {}",
        second.output
    );
    // The first one drives the service to the end, undisturbed.
    let first = first.wait_exit(Duration::from_secs(150)).await;
    assert_eq!(first.code, 0, "{}", first.output);
    assert_eq!(env.primary(), 100);
    assert!(
        lock_holder(&env).is_null(),
        "the lock is released at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_for_the_state_file_is_a_clear_error_and_changes_nothing() {
    let env = Env::with_prometheus("disk-full").await;
    // Every write of the state goes to /dev/full: "No space left on device".
    std::os::unix::fs::symlink("/dev/full", env.path("state.json.tmp")).unwrap();
    let policy = env.policy().stages(&PLAN).write();
    let run = env
        .cutover_on("run", &policy, &env.path("state.json"))
        .finish(Duration::from_secs(60))
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
    assert_eq!(env.weights(), ALL_ON_DR);
    assert_eq!(
        env.exporter().observed_weights(),
        [0],
        "no weight ever changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_for_a_while_then_back_does_not_fail_the_run() {
    let mut env = Env::with_prometheus("prom-flap").await;
    let policy = env.policy().stages(&PLAN).write();
    let mut run = env
        .cutover_on("run", &policy, &env.path("state.json"))
        .spawn();
    wait_until("stage 2", Duration::from_secs(60), || {
        env.exporter().max_weight_seen() >= 50
    })
    .await;
    env.prom_mut().kill();
    // Down for one interval: fewer failed analyses in a row than consecutive_error_limit.
    tokio::time::sleep(Duration::from_secs(INTERVAL)).await;
    env.prom_mut().restart().await;
    let run = run.wait_exit(Duration::from_secs(150)).await;
    assert_eq!(
        run.code, 0,
        "promoted after Prometheus came back: {}",
        run.output
    );
    assert_eq!(env.primary(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_state_or_plans() {
    let env = Env::new("secrets");
    let token = env.path("token");
    std::fs::write(&token, "tok-SECRET-0001").unwrap();
    let port = cutover_tests::free_port();
    let text = env
        .policy_judged_by(&format!("http://ops:SECRET-pass-0003@127.0.0.1:{port}"))
        .stages(&PLAN)
        .extra("notify:\n  - webhook: https://hooks.example.com/services/T0/B0/SECRET-hook-0002\n")
        .text()
        .replace(
            "  timeout: 2s\n",
            &format!("  timeout: 2s\n  bearer_token_file: {}\n", token.display()),
        );
    let policy = env.path("p.yaml");
    std::fs::write(&policy, text).unwrap();
    let state = env.path("state.json");
    let run = env
        .cutover_on("run", &policy, &state)
        .env("RUST_LOG", "trace")
        .finish(Duration::from_secs(60))
        .await;
    assert_eq!(
        run.code, 3,
        "Prometheus is not there: preflight fails\n{}",
        run.output
    );
    let plan = env
        .cutover(["plan"])
        .arg(&policy)
        .finish(Duration::from_secs(60))
        .await;
    let everything = format!(
        "{}{}{}",
        run.output,
        std::fs::read_to_string(&state).unwrap_or_default(),
        plan.output
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
    let env = Env::with_prometheus("sigterm").await;
    let policy = env.policy().stages(&PLAN).write();
    let state = env.path("state.json");
    let pod = || env.cutover_on("run", &policy, &state).spawn();
    let mut first = pod();
    wait_until("stage 2", Duration::from_secs(60), || {
        env.exporter().max_weight_seen() >= 50
    })
    .await;
    // What Kubernetes sends a pod it evicts.
    first.signal("TERM");
    let first = first.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(first.code, 4, "aborted: {}", first.output);
    assert_eq!(
        env.primary(),
        50,
        "held at a planned weight (on_signal: hold)"
    );
    assert_eq!(first.state["phase"], "aborted");
    let next = pod().wait_exit(Duration::from_secs(150)).await;
    assert_eq!(
        next.code, 0,
        "the next pod resumed and promoted: {}",
        next.output
    );
    assert_eq!(next.state["restarts"], 1);
    assert_eq!(env.primary(), 100);
}

/// `cutover --log-format json run POLICY --state-file STATE`, started.
fn spawn_run(env: &Env, policy: &Path, state: &Path) -> cutover_tests::cli::Running {
    env.cutover(["--log-format", "json", "run"])
        .arg(policy)
        .state_file(state)
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_rollback_brakes_a_live_run_at_each_phase_and_nothing_writes_forward_again() {
    let env = Env::with_prometheus("brake").await;
    let policy = env.policy().stages(&PLAN).write();
    for (i, moment) in ["settling", "judging", "stage 2"].into_iter().enumerate() {
        env.reset_weights();
        let state = env.path(&format!("brake-{i}.json"));
        // Given a live run at this moment (a Job's pod: its run id is the Job's),
        let job = format!("job-brake-{i}");
        let mut run = env
            .cutover(["--log-format", "json", "run"])
            .arg(&policy)
            .state_file(&state)
            .env("CUTOVER_RUN_ID", &job)
            .spawn();
        wait_until(moment, Duration::from_secs(60), || match moment {
            "settling" => env.primary() == 25 && state_phase(&state) == "settling",
            "judging" => env.primary() == 25 && state_phase(&state) == "judging",
            _ => env.primary() == 50,
        })
        .await;
        // (`cutover status` names the run holding the object's lock),
        let status = env
            .cutover_on("status", &policy, &state)
            .finish(Duration::from_secs(30))
            .await;
        assert!(
            status
                .output
                .contains(&format!("lock:   held by run {job}"))
                && status.output.contains(&format!("pid {}", run.pid())),
            "{moment}: {}",
            status.output
        );
        // when the operator pulls the brake,
        let rb = env
            .cutover_on("rollback", &policy, &state)
            .args(["--watch", "30s"])
            .finish(Duration::from_secs(90))
            .await;
        assert_eq!(rb.code, 0, "{moment}: {}", rb.output);
        assert!(rb.output.contains("braked:"), "{moment}: {}", rb.output);
        // then traffic is on DR and stays there, and the run ends as the operator's rollback.
        let weights = env.weights_file();
        let watcher = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..200 {
                seen.push(primary_in(&weights));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        });
        let braked = run.wait_exit(Duration::from_secs(60)).await;
        assert_eq!(braked.code, 4, "{moment}: {}", braked.output);
        assert_eq!(braked.state["phase"], "aborted", "{moment}");
        assert!(
            braked.state["outcome"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("operator rollback"),
            "{moment}: {}",
            braked.state["outcome"]
        );
        // A restarted pod of that run (the same Job) does not write forward.
        let again = env
            .cutover_on("run", &policy, &state)
            .env("CUTOVER_RUN_ID", &job)
            .finish(Duration::from_secs(60))
            .await;
        assert_eq!(again.code, 4, "{moment}: {}", again.output);
        let seen = watcher.await.unwrap();
        assert!(
            seen.iter().all(|w| *w == 0),
            "{moment}: traffic stays on DR: {seen:?}"
        );
        assert_eq!(env.primary(), 0, "{moment}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_interference_is_reported_within_one_interval_and_nothing_advances() {
    let env = Env::with_prometheus("drift").await;
    // Stage 1 would pass after its 8 s bake; undecided stages end at 30 s.
    let policy = env
        .policy()
        .stages(&PLAN)
        .max_duration("30s")
        .at(env.path("drift.yaml"))
        .write();
    let cases: [(&str, &str); 3] = [
        (
            "a weight the plan does not name",
            "{\"primary\":33,\"dr\":67}",
        ),
        ("a garbage file", "this is not json"),
        ("a deleted file", ""),
    ];
    for (i, (what, content)) in cases.into_iter().enumerate() {
        env.reset_weights();
        let state = env.path(&format!("drift-{i}.json"));
        let mut run = spawn_run(&env, &policy, &state);
        wait_until("judging stage 1", Duration::from_secs(60), || {
            env.primary() == 25 && state_phase(&state) == "judging"
        })
        .await;
        if content.is_empty() {
            std::fs::remove_file(env.weights_file()).unwrap();
        } else {
            std::fs::write(env.weights_file(), content).unwrap();
        }
        let at = std::time::Instant::now();
        wait_until(
            &format!("{what}: a drift event"),
            Duration::from_secs(INTERVAL + 4),
            || run.output().contains("DRIFT"),
        )
        .await;
        let within = at.elapsed();
        let run = run.wait_exit(Duration::from_secs(90)).await;
        assert_eq!(run.code, 5, "{what}: held, not advanced: {}", run.output);
        assert_eq!(
            run.primary_history(),
            [25],
            "{what}: nothing advances past a drift"
        );
        assert!(
            run.state["outcome"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("drift"),
            "{what}: {}",
            run.state["outcome"]
        );
        println!("{what}: reported {within:?} after the change");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_to_resume_a_run_someone_rolled_back_holds_at_every_retry() {
    let env = Env::with_prometheus("sticky-refusal").await;
    let policy = env.policy().stages(&PLAN).write();
    let state = env.path("state.json");
    // Given a Job's run at stage 1, killed, and all traffic put back on DR by hand,
    let mut run = env
        .cutover(["--log-format", "json", "run"])
        .arg(&policy)
        .state_file(&state)
        .env("CUTOVER_RUN_ID", "job-1")
        .spawn();
    wait_until("stage 1", Duration::from_secs(60), || {
        env.primary() == 25 && state_phase(&state) == "judging"
    })
    .await;
    run.kill().await;
    env.reset_weights();
    // when the Job's pod is retried again and again (the same run id),
    for attempt in 0..3 {
        let again = env
            .cutover_on("run", &policy, &state)
            .env("CUTOVER_RUN_ID", "job-1")
            .finish(Duration::from_secs(60))
            .await;
        // then every retry refuses, and no cutover starts on the rolled-back service.
        assert_eq!(again.code, 3, "attempt {attempt}: {}", again.output);
        assert!(
            again.output.contains("someone rolled back"),
            "attempt {attempt}: {}",
            again.output
        );
        assert_eq!(env.primary(), 0, "attempt {attempt}");
    }
    // An operator who decides to try again types the command themselves: a new run starts
    // (a new invocation, a new run id) and the refused one stays in the history.
    let fresh = env
        .cutover_on("run", &policy, &state)
        .finish(Duration::from_secs(120))
        .await;
    assert_eq!(fresh.code, 0, "{}", fresh.output);
    assert_eq!(fresh.state["earlier_runs"][0]["run_id"], "job-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_signal_a_stepped_rollback_still_waits_between_its_steps() {
    let env = Env::with_prometheus("signal-steps").await;
    let policy = env
        .policy()
        .stages(&PLAN)
        .extra("on_signal: rollback\nrollback:\n  mode: stepped\n  step_interval: 3s\n")
        .write();
    // Given a run at stage 2 (50 %) whose policy rolls back in steps on a signal,
    let mut run = spawn_run(&env, &policy, &env.path("state.json"));
    wait_until("stage 2", Duration::from_secs(60), || env.primary() == 50).await;
    // when SIGINT arrives,
    run.signal("INT");
    let start = std::time::Instant::now();
    let mut changes: Vec<(Duration, u64)> = vec![(Duration::ZERO, 50)];
    let code = loop {
        if let Some(code) = run.try_exit() {
            // The last write may land just before the exit: read it once more.
            let w = env.primary();
            if changes.last().map(|c| c.1) != Some(w) {
                changes.push((start.elapsed(), w));
            }
            break code;
        }
        let w = env.primary();
        if changes.last().map(|c| c.1) != Some(w) {
            changes.push((start.elapsed(), w));
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{changes:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // then it walks 50 -> 25 -> 0 with step_interval between the steps, and exits 4.
    let text = run.output();
    assert_eq!(code, 4, "{text}");
    let seq: Vec<u64> = changes.iter().map(|c| c.1).collect();
    assert_eq!(seq, [50, 25, 0], "{changes:?}\n{text}");
    let gap = changes[2].0 - changes[1].0;
    assert!(
        gap >= Duration::from_millis(2500),
        "the steps are step_interval (3 s) apart, not at once: {changes:?}"
    );
}
