//! One writer per traffic object, file backend.
//!
//! Given two `cutover run`s of one service with different policies, state files and working
//! directories, started within milliseconds of each other, when both reach for the weights
//! file, then exactly one drives it and the other exits 2 naming the holder; and a lock
//! left by a holder that stopped renewing is taken over only once it has expired.

use std::path::Path;
use std::time::Duration;

use cutover_tests::cli::policy_text;
use cutover_tests::{TempDir, assert_one_refused, cutover_bin, race, silent_server};

fn command(dir: &Path, policy: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(cutover_bin());
    cmd.args(["run"])
        .arg(policy)
        .current_dir(dir)
        .env("CUTOVER_STATE_DIR", dir.join("state"));
    cmd
}

fn write_policy(dir: &Path, weights: &Path, prom: &str, stages: &[u8]) -> std::path::PathBuf {
    let backend = format!("  file:\n    path: {}", weights.display());
    let p = dir.join("checkout.yaml");
    std::fs::write(&p, policy_text(&backend, prom, stages, "60s", "")).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_weights_file_never_both_drive_it_in_20_races() {
    let root = TempDir::new("lock-race");
    // A Prometheus that does not answer at first keeps the winner in preflight, holding the
    // lock while the other run looks; then it fails preflight without writing.
    let weights = root.path().join("shared/weights.json");
    std::fs::create_dir_all(weights.parent().unwrap()).unwrap();
    for round in 0..20 {
        let prom = silent_server(Duration::from_millis(1500)).await;
        std::fs::write(&weights, r#"{"primary":0,"dr":100}"#).unwrap();
        let (a, b) = (
            root.path().join(format!("a{round}")),
            root.path().join(format!("b{round}")),
        );
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        // Two different policies on the same file, each named by another path spelling.
        let pa = write_policy(&a, &weights, &prom, &[10, 50, 100]);
        let other_spelling = root.path().join("shared/./weights.json");
        let pb = write_policy(&b, &other_spelling, &prom, &[25, 100]);
        let results = race(command(&a, &pa), command(&b, &pb)).await;
        assert_one_refused(&results, round);
        let text = std::fs::read_to_string(&weights).unwrap();
        assert!(
            text.contains(r#""primary":0"#),
            "round {round}: nothing was written: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_stopped_renewing_is_taken_over_only_after_it_expires() {
    let root = TempDir::new("lock-expiry");
    let prom = silent_server(Duration::from_secs(30)).await;
    let weights = root.path().join("weights.json");
    std::fs::write(&weights, r#"{"primary":0,"dr":100}"#).unwrap();
    let policy = write_policy(root.path(), &weights, &prom, &[10, 100]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A holder killed with -9 on this host (its pid is gone) that renewed a moment ago: a
    // dead pid is no proof for another run (pids are reused, hosts are shared); it waits
    // for the expiry.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let lock_file = root.path().join("weights.json.cutover-lock");
    let write_holder = |renewed: u64| {
        let record = serde_json::json!({
            "holder": {"run_id": "checkout-killed", "host": host.trim(), "pid": 4_000_000,
                       "state": "file elsewhere", "acquired": now - 100, "renewed": renewed, "ttl": 30}
        });
        std::fs::write(&lock_file, record.to_string()).unwrap();
    };
    write_holder(now);
    let out = command(root.path(), &policy).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("run checkout-killed") && text.contains("pid 4000000"),
        "{text}"
    );
    assert!(text.contains("expires"), "says when it expires: {text}");
    // The same holder, last renewed 31 s ago with a 30 s time to live: expired, taken over.
    write_holder(now - 31);
    let out = command(root.path(), &policy).output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Taken over: the run goes on to preflight (which fails here: Prometheus never answers).
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("taking over an expired lock"), "{text}");
    let lock: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.path().join("weights.json.cutover-lock")).unwrap(),
    )
    .unwrap();
    assert!(lock["holder"].is_null(), "released at the end: {lock}");
}
