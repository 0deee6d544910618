//! The operator in the loop, end to end against a real Prometheus and the file backend:
//! approvals, pause, resume, promote, abort through the state store; runs with an
//! identity and a history; held runs continued; dry runs that write nothing.
//!
//! Given a Prometheus scraping the workload exporter every second and a run driving the
//! file backend, when an operator types a command, then the run acknowledges it within
//! one analysis interval and the weights, exit code and record say what it did.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cutover_tests::cli::{Finished, INTERVAL};
use cutover_tests::env::{Env, RUN_LIMIT};
use cutover_tests::exporter::Behaviour;
use cutover_tests::{free_port, wait_until};
use serde_json::Value;

/// The test policy with `stages`, the stage of weight `approval_at` (if any) carrying
/// `approval` (e.g. `approval: manual`), and `bake`.
fn policy(env: &Env, stages: &[u8], approval_at: Option<(u8, &str)>, bake: &str) -> PathBuf {
    let mut text = env.policy().stages(stages).max_duration("120s").text();
    text = text.replace("bake: 8s", &format!("bake: {bake}"));
    if let Some((w, a)) = approval_at {
        let line = format!("  - weight: {w}\n");
        assert!(text.contains(&line));
        text = text.replace(&line, &format!("{line}    {a}\n"));
    }
    let p = env.path("checkout.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `cutover run` of the policy, spawned, once its first stage (10 %) is written.
async fn run_to_first_stage(env: &Env, policy: &Path) -> cutover_tests::cli::Running {
    let run = env
        .cutover_on("run", policy, &env.path("state.json"))
        .spawn();
    wait_until("10 % written", Duration::from_secs(60), || {
        env.primary() == 10
    })
    .await;
    run
}

/// `cutover status -o json` of the policy.
async fn status(env: &Env, policy: &Path) -> Value {
    let out = env
        .cutover_on("status", policy, &env.path("state.json"))
        .args(["-o", "json"])
        .finish(Duration::from_secs(20))
        .await;
    assert_eq!(out.code, 0, "{}", out.output);
    let start = out.output.find('{').expect("a JSON document");
    let end = out.output.rfind('}').expect("a JSON document");
    serde_json::from_str(&out.output[start..=end]).unwrap_or_else(|e| panic!("{e}: {}", out.output))
}

/// `cutover COMMAND POLICY ARGS` against the run's state file, to its end.
async fn command(env: &Env, cmd: &str, policy: &Path, args: &[&str]) -> Finished {
    env.cutover_on(cmd, policy, &env.path("state.json"))
        .args(args)
        .finish(Duration::from_secs(60))
        .await
}

async fn wait_phase(env: &Env, policy: &Path, phase: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let s = status(env, policy).await;
        if s["run"]["phase"] == phase {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "phase {phase} not reached within {limit:?}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_stage_waits_shows_awaiting_approval_and_goes_on_within_one_interval() {
    let env = Env::with_prometheus("op-approve").await;
    let policy = policy(&env, &[10, 25, 100], Some((25, "approval: manual")), "4s");
    let port = free_port();
    let mut run = env
        .cutover_on("run", &policy, &env.path("state.json"))
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .spawn();
    let s = wait_phase(&env, &policy, "awaiting_approval", Duration::from_secs(90)).await;
    assert_eq!(s["run"]["awaiting_approval"]["stage"], 2, "{s:#}");
    let m = metrics(port).await;
    assert!(
        m.contains("cutover_awaiting_approval{service=\"checkout\"} 2"),
        "{m}"
    );
    // Still at 10 % two intervals later: nothing is written without the approval.
    tokio::time::sleep(Duration::from_secs(2 * INTERVAL)).await;
    assert_eq!(env.primary(), 10);
    let approved = Instant::now();
    let ack = command(
        &env,
        "approve",
        &policy,
        &["--as", "dba", "--reason", "CHG-42"],
    )
    .await;
    assert_eq!(ack.code, 0, "{}", ack.output);
    assert!(ack.output.contains("approved"), "{}", ack.output);
    wait_until("25 % written", Duration::from_secs(INTERVAL + 5), || {
        env.primary() == 25
    })
    .await;
    println!("25 % written {:?} after the approval", approved.elapsed());
    let run = run.wait_exit(RUN_LIMIT).await;
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 100]);
    let s = status(&env, &policy).await;
    let op = &s["run"]["operator"][0];
    assert_eq!(op["by"], "dba", "{s:#}");
    assert_eq!(op["reason"], "CHG-42", "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvers_must_be_two_people() {
    let env = Env::with_prometheus("op-two").await;
    let policy = policy(
        &env,
        &[10, 25, 100],
        Some((25, "approval: manual\n    approvals: 2")),
        "4s",
    );
    let mut run = env
        .cutover_on("run", &policy, &env.path("state.json"))
        .spawn();
    wait_phase(&env, &policy, "awaiting_approval", Duration::from_secs(90)).await;
    let first = command(&env, "approve", &policy, &["--as", "alice"]).await;
    assert_eq!(first.code, 0, "{}", first.output);
    assert!(first.output.contains("1 of 2"), "{}", first.output);
    let again = command(&env, "approve", &policy, &["--as", "alice"]).await;
    assert_eq!(again.code, 2, "{}", again.output);
    assert!(
        again.output.contains("alice already approved"),
        "{}",
        again.output
    );
    assert_eq!(env.primary(), 10);
    let second = command(&env, "approve", &policy, &["--as", "bob"]).await;
    assert_eq!(second.code, 0, "{}", second.output);
    let run = run.wait_exit(RUN_LIMIT).await;
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_the_weight_and_a_breach_during_the_pause_still_rolls_back() {
    let env = Env::with_prometheus("op-pause").await;
    let policy = policy(&env, &[10, 25, 100], None, "4s");
    let mut run = run_to_first_stage(&env, &policy).await;
    let ack = command(&env, "pause", &policy, &["--reason", "business hours"]).await;
    assert_eq!(ack.code, 0, "{}", ack.output);
    let s = status(&env, &policy).await;
    assert_eq!(s["run"]["phase"], "paused", "{s:#}");
    // Far past the bake: still at 10 %.
    tokio::time::sleep(Duration::from_secs(4 * INTERVAL)).await;
    assert_eq!(env.primary(), 10, "a paused run advanced");
    // Harm while paused: rolled back.
    env.exporter().set(
        0,
        Behaviour {
            error_rate: 0.2,
            ..Behaviour::default()
        },
    );
    let run = run.wait_exit(RUN_LIMIT).await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_lifts_a_pause_and_abort_rolls_back_within_one_interval() {
    let env = Env::with_prometheus("op-abort").await;
    let policy = policy(&env, &[10, 25, 50, 100], None, "4s");
    let mut run = run_to_first_stage(&env, &policy).await;
    assert_eq!(command(&env, "pause", &policy, &[]).await.code, 0);
    tokio::time::sleep(Duration::from_secs(3 * INTERVAL)).await;
    assert_eq!(env.primary(), 10);
    let resumed = command(&env, "resume", &policy, &[]).await;
    assert_eq!(resumed.code, 0, "{}", resumed.output);
    wait_until("25 % written", Duration::from_secs(60), || {
        env.primary() == 25
    })
    .await;
    let asked = Instant::now();
    let ack = command(
        &env,
        "abort",
        &policy,
        &["--as", "sre", "--reason", "DBA says no"],
    )
    .await;
    assert_eq!(ack.code, 0, "{}", ack.output);
    let took = asked.elapsed();
    assert!(
        took <= Duration::from_secs(INTERVAL + 3),
        "acknowledged after {took:?}"
    );
    let run = run.wait_exit(RUN_LIMIT).await;
    assert_eq!(run.code, 4, "{}", run.output);
    assert_eq!(env.primary(), 0);
    assert!(
        run.output.contains("aborted by sre: DBA says no"),
        "{}",
        run.output
    );
    // After the run: a command says there is nothing to do, exit 2, and changes nothing.
    let late = command(&env, "pause", &policy, &[]).await;
    assert_eq!(late.code, 2, "{}", late.output);
    assert!(late.output.contains("is over"), "{}", late.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_to_next_skips_the_rest_of_the_bake() {
    let env = Env::with_prometheus("op-promote").await;
    let policy = policy(&env, &[10, 25, 100], None, "90s");
    let mut run = run_to_first_stage(&env, &policy).await;
    let written = Instant::now();
    let ack = command(
        &env,
        "promote",
        &policy,
        &["--to-next", "--reason", "looks fine"],
    )
    .await;
    assert_eq!(ack.code, 0, "{}", ack.output);
    wait_until("25 % written", Duration::from_secs(40), || {
        env.primary() == 25
    })
    .await;
    assert!(
        written.elapsed() < Duration::from_secs(60),
        "the 90s bake was not skipped"
    );
    // The next stage bakes as usual; stop here.
    assert_eq!(command(&env, "abort", &policy, &[]).await.code, 0);
    let run = run.wait_exit(RUN_LIMIT).await;
    assert_eq!(run.code, 4, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rollback_the_same_policy_starts_a_new_run_and_status_lists_both() {
    let env = Env::with_prometheus("op-again").await;
    let policy = policy(&env, &[10, 100], None, "4s");
    env.exporter().set(
        0,
        Behaviour {
            error_rate: 0.2,
            ..Behaviour::default()
        },
    );
    let first = env.run(&policy).await;
    assert_eq!(first.code, 1, "{}", first.output);
    // The primary is fixed; the same command again starts a new run, without --fresh.
    env.exporter().set(0, Behaviour::default());
    let second = env.run(&policy).await;
    assert_eq!(second.code, 0, "{}", second.output);
    assert!(
        !second.output.contains("already finished"),
        "{}",
        second.output
    );
    let s = status(&env, &policy).await;
    assert_eq!(s["run"]["outcome"]["exit_code"], 0, "{s:#}");
    let earlier = s["earlier_runs"].as_array().unwrap();
    assert_eq!(earlier.len(), 1, "{s:#}");
    assert_eq!(earlier[0]["outcome"]["exit_code"], 1, "{s:#}");
    assert_ne!(earlier[0]["run_id"], s["run"]["run_id"], "{s:#}");
    let text = env
        .cutover_on("status", &policy, &env.path("state.json"))
        .finish(Duration::from_secs(20))
        .await;
    assert!(text.output.contains("earlier runs"), "{}", text.output);

    // A pod of the same Job (same run id) that restarts after its run ended says the
    // outcome again and changes nothing; another Job starts a new run.
    let id = s["run"]["run_id"].as_str().unwrap().to_string();
    let again = env
        .cutover_on("run", &policy, &env.path("state.json"))
        .args(["--run-id", &id])
        .finish(RUN_LIMIT)
        .await;
    assert_eq!(again.code, 0, "{}", again.output);
    assert!(
        again.output.contains("already finished"),
        "{}",
        again.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_run_is_continued_from_its_weight_with_plan_weights_only() {
    let env = Env::with_prometheus("op-held").await;
    let text = env
        .policy()
        .stages(&[10, 25, 50, 100])
        .max_duration("16s")
        .text();
    let policy = env.path("checkout.yaml");
    std::fs::write(&policy, text).unwrap();
    // At 25 % the primary stops answering: the stage never settles, and the run holds.
    env.exporter().on_weight(
        25,
        0,
        Behaviour {
            reachable: false,
            ..Behaviour::default()
        },
    );
    let held = env.run(&policy).await;
    assert_eq!(held.code, 5, "{}", held.output);
    assert_eq!(env.primary(), 25);
    // A plain `run` refuses to start at 25 % and says how to continue.
    let refused = env.run(&policy).await;
    assert_eq!(refused.code, 3, "{}", refused.output);
    assert!(
        refused.output.contains("cutover resume"),
        "{}",
        refused.output
    );
    assert_eq!(
        status(&env, &policy).await["run"]["phase"],
        "held",
        "the held record was kept"
    );
    env.exporter().set(0, Behaviour::default());
    let resumed = env
        .cutover_on("resume", &policy, &env.path("state.json"))
        .args(["--as", "sre"])
        .finish(RUN_LIMIT)
        .await;
    assert_eq!(resumed.code, 0, "{}", resumed.output);
    let s = status(&env, &policy).await;
    let weights: Vec<String> = s["run"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["weights"].as_str().unwrap().to_string())
        .collect();
    assert!(
        weights.iter().all(|w| !w.starts_with("primary 0%")),
        "walked from 0: {weights:?}"
    );
    let primaries: Vec<u64> = s["run"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["stage"].as_u64().unwrap())
        .collect();
    assert_eq!(primaries, [1, 2, 3, 4], "{s:#}");
    assert_eq!(env.primary(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_judges_the_live_split_and_writes_nothing() {
    let env = Env::with_prometheus("op-dry").await;
    let policy = policy(&env, &[10, 25, 100], None, "4s");
    std::fs::write(env.weights_file(), r#"{"primary":25,"dr":75}"#).unwrap();
    let before = std::fs::read(env.weights_file()).unwrap();
    let run = env
        .cutover(["run"])
        .arg(&policy)
        .arg("--dry-run")
        .state_file(&env.path("state.json"))
        .finish(RUN_LIMIT)
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    assert!(run.output.contains("dry run"), "{}", run.output);
    assert!(
        run.output
            .contains("a run would write stage 3/3 (100%) next"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("error-rate"),
        "the verdicts are printed: {}",
        run.output
    );
    assert_eq!(
        std::fs::read(env.weights_file()).unwrap(),
        before,
        "the object changed"
    );
    assert!(
        !env.path("state.json").exists(),
        "a dry run persists nothing"
    );

    // A failing primary: the dry run says a run would roll back, and still writes nothing.
    env.exporter().set(
        0,
        Behaviour {
            error_rate: 0.2,
            ..Behaviour::default()
        },
    );
    let run = env
        .cutover(["run"])
        .arg(&policy)
        .arg("--dry-run")
        .state_file(&env.path("state.json"))
        .finish(RUN_LIMIT)
        .await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert!(
        run.output.contains("a run would roll back"),
        "{}",
        run.output
    );
    assert_eq!(std::fs::read(env.weights_file()).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_with_no_run_or_another_services_record_exit_2_and_change_nothing() {
    let env = Env::with_prometheus("op-none").await;
    let policy = policy(&env, &[10, 100], Some((100, "approval: manual")), "4s");
    for cmd in ["pause", "resume", "promote", "abort", "approve"] {
        let out = command(&env, cmd, &policy, &[]).await;
        assert_eq!(out.code, 2, "{cmd}: {}", out.output);
        assert!(
            out.output.contains("no run is recorded"),
            "{cmd}: {}",
            out.output
        );
    }
    assert!(!env.path("state.json").exists());
    assert_eq!(env.primary(), 0);
    // A record of another service in the same state file.
    let run = env.run(&policy_for_service(&env, "payments")).await;
    assert_eq!(run.code, 3, "{}", run.output);
    let out = command(&env, "pause", &policy, &[]).await;
    assert_eq!(out.code, 2, "{}", out.output);
    assert!(out.output.contains("not `checkout`"), "{}", out.output);
}

fn policy_for_service(env: &Env, service: &str) -> PathBuf {
    // A preflight that fails: the run ends at once, leaving its record.
    let text = env
        .policy()
        .service(service)
        .stages(&[10, 100])
        .text()
        .replace("max: 60\n", "max: -1\n");
    let p = env.path("other.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// An approval webhook: answers 403 until `open` is set, then 200; records each body.
async fn webhook(
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use cutover_tests::http1::{read_request, write_response};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/approve", listener.local_addr().unwrap());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            if let Ok(Some(req)) = read_request(&mut sock).await {
                if let Ok(v) = serde_json::from_slice(&req.body) {
                    s.lock().unwrap().push(v);
                }
                let ok = open.load(std::sync::atomic::Ordering::SeqCst);
                let _ =
                    write_response(&mut sock, if ok { 200 } else { 403 }, "text/plain", b"").await;
            }
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_approves_a_stage_with_a_2xx_and_is_asked_every_interval_until_then() {
    let env = Env::with_prometheus("op-webhook").await;
    let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (url, seen) = webhook(open.clone()).await;
    let policy = policy(
        &env,
        &[10, 25, 100],
        Some((25, &format!("approval: {{ webhook: \"{url}\" }}"))),
        "4s",
    );
    let mut run = env
        .cutover_on("run", &policy, &env.path("state.json"))
        .spawn();
    wait_until("asked twice", Duration::from_secs(90), || {
        seen.lock().unwrap().len() >= 2
    })
    .await;
    assert_eq!(env.primary(), 10, "a 403 approved");
    let body = seen.lock().unwrap()[0].clone();
    assert_eq!(body["service"], "checkout", "{body:#}");
    assert_eq!(body["awaiting_stage"], 2, "{body:#}");
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    let run = run.wait_exit(RUN_LIMIT).await;
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 25, 100]);
}
