//! One writer per traffic object, file backend.
//!
//! Given two `cutover run`s of one service with different policies, state files and working
//! directories, started within milliseconds of each other, when both reach for the weights
//! file, then exactly one drives it and the other exits 2 naming the holder; and a lock
//! left by a holder that stopped renewing is taken over only once it has expired.

use std::path::Path;
use std::time::Duration;

use cutover_tests::cli::Cutover;
use cutover_tests::env::Env;
use cutover_tests::{assert_one_refused, race, silent_server};

/// `cutover run POLICY` in `dir`, with its default state in `dir/state`.
fn run_in<'a>(env: &'a Env, dir: &Path, policy: &Path) -> Cutover<'a> {
    env.cutover(["run"])
        .arg(policy)
        .current_dir(dir)
        .env("CUTOVER_STATE_DIR", dir.join("state"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_weights_file_never_both_drive_it_in_20_races() {
    let env = Env::new("lock-race");
    // A Prometheus that does not answer at first keeps the winner in preflight, holding the
    // lock while the other run looks; then it fails preflight without writing.
    for round in 0..20 {
        let prom = silent_server(Duration::from_millis(1500)).await;
        env.reset_weights();
        let (a, b) = (
            env.path(&format!("a{round}")),
            env.path(&format!("b{round}")),
        );
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        // Two different policies on the same file, each named by another path spelling.
        let pa = env
            .policy_judged_by(&prom)
            .stages(&[10, 50, 100])
            .at(a.join("checkout.yaml"))
            .write();
        let other_spelling = env.path("./weights.json");
        let pb = env
            .policy_judged_by(&prom)
            .backend(&cutover_tests::cli::file_backend(&other_spelling))
            .stages(&[25, 100])
            .at(b.join("checkout.yaml"))
            .write();
        let results = race(
            run_in(&env, &a, &pa).command(),
            run_in(&env, &b, &pb).command(),
        )
        .await;
        assert_one_refused(&results, round);
        let text = env.weights();
        assert!(
            text.contains(r#""primary":0"#),
            "round {round}: nothing was written: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_stopped_renewing_is_taken_over_only_after_it_expires() {
    let env = Env::new("lock-expiry");
    let prom = silent_server(Duration::from_secs(30)).await;
    let policy = env.policy_judged_by(&prom).stages(&[10, 100]).write();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A holder killed with -9 on this host (its pid is gone) that renewed a moment ago: a
    // dead pid is no proof for another run (pids are reused, hosts are shared); it waits
    // for the expiry.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let lock_file = env.path("weights.json.cutover-lock");
    let write_holder = |renewed: u64| {
        let record = serde_json::json!({
            "holder": {"run_id": "checkout-killed", "host": host.trim(), "pid": 4_000_000,
                       "state": "file elsewhere", "acquired": now - 100, "renewed": renewed, "ttl": 30}
        });
        std::fs::write(&lock_file, record.to_string()).unwrap();
    };
    write_holder(now);
    let limit = Duration::from_secs(60);
    let run = run_in(&env, env.dir.path(), &policy).finish(limit).await;
    let text = &run.output;
    assert_eq!(run.code, 2, "{text}");
    assert!(
        text.contains("run checkout-killed") && text.contains("pid 4000000"),
        "{text}"
    );
    assert!(text.contains("expires"), "says when it expires: {text}");
    // The same holder, last renewed 31 s ago with a 30 s time to live: expired, taken over.
    write_holder(now - 31);
    let run = run_in(&env, env.dir.path(), &policy).finish(limit).await;
    let text = &run.output;
    // Taken over: the run goes on to preflight (which fails here: Prometheus never answers).
    assert_eq!(run.code, 3, "{text}");
    assert!(text.contains("taking over an expired lock"), "{text}");
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock_file).unwrap()).unwrap();
    assert!(lock["holder"].is_null(), "released at the end: {lock}");
}
