//! Harness of the end-to-end tests: a real Prometheus on loopback, a workload exporter
//! whose traffic follows the weights file, and the `cutover` binary; [`env::Env`] puts
//! them together for a test.
//!
//! A missing component is installed by `tests/setup.sh`; if it still cannot be found the
//! test fails (never skips). Every process started here is killed when its handle drops,
//! and what it printed is shown only if the test fails ([`logs::Logs`]).
#![forbid(unsafe_code)]

pub mod backfill;
pub mod cli;
pub mod env;
pub mod exporter;
pub mod http1;
pub mod kube_api;
pub mod kubelet;
pub mod logs;
pub mod moto;
pub mod patroni;
pub mod pgwire;
pub mod postgres;
pub mod prometheus;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The content of a weights file with all traffic on DR, as every test starts.
pub const ALL_ON_DR: &str = r#"{"primary":0,"dr":100}"#;

/// The primary weight in a weights file (the test fails if it is not there).
pub fn primary_in(weights: &Path) -> u64 {
    let text = std::fs::read_to_string(weights)
        .unwrap_or_else(|e| panic!("read {}: {e}", weights.display()));
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["primary"].as_u64())
        .unwrap_or_else(|| panic!("no primary weight in {}: {text}", weights.display()))
}

/// A JSON file's content; `Null` if it is missing or not JSON.
pub fn read_json(path: &Path) -> serde_json::Value {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Polls `cond` every 50 ms for at most `limit`; fails the test naming `what` if it never
/// holds.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `cutover` binary, built once per test process (a no-op when it is fresh).
pub fn cutover_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "cutover", "--bin", "cutover"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the cutover binary failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        let bin = target.join("debug").join("cutover");
        assert!(bin.exists(), "{} is missing after the build", bin.display());
        bin
    })
    .clone()
}

/// A fresh temporary folder for one test, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/cutover-e2e-<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "cutover-e2e-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Finds a program, running `tests/setup.sh` once if it is missing; panics (fails the
/// test) if it is still missing.
pub fn require_program(name: &str) -> PathBuf {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = find() {
        return p;
    }
    let (_, output) = setup();
    find().unwrap_or_else(|| {
        panic!("`{name}` is required by this test and could not be installed by tests/setup.sh; install it and rerun\n{output}")
    })
}

/// Runs `tests/setup.sh` once per test process: whether it succeeded, and what it printed
/// (for the message of a test that fails for want of what it installs).
pub fn setup() -> (bool, String) {
    static SETUP: OnceLock<(bool, String)> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            match Command::new("bash")
                .arg(workspace().join("tests/setup.sh"))
                .output()
            {
                Ok(out) => (
                    out.status.success(),
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                ),
                Err(e) => (false, format!("bash tests/setup.sh: {e}")),
            }
        })
        .clone()
}

/// A loopback "Prometheus" that holds its first connection unanswered for `hold`, then
/// closes it and every later one at once: it keeps a run in preflight for a moment (holding
/// its lock), then fails the preflight, so that nothing is ever written.
pub async fn silent_server(hold: std::time::Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move {
        // Bounded: the test's runtime ends it.
        let mut first = true;
        while let Ok((sock, _)) = listener.accept().await {
            let wait = if first {
                hold
            } else {
                std::time::Duration::ZERO
            };
            first = false;
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                drop(sock);
            });
        }
    });
    url
}

/// Two `cutover run`s started within a few milliseconds of each other; returns each one's
/// pid, exit code and output.
pub async fn race(
    first: tokio::process::Command,
    second: tokio::process::Command,
) -> Vec<(u32, i32, String)> {
    let mut out = Vec::new();
    let mut children = Vec::new();
    for mut cmd in [first, second] {
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().expect("cutover starts");
        children.push(child);
    }
    for child in children {
        let pid = child.id().unwrap_or(0);
        let o = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("a raced run ends within 60 s")
            .expect("cutover runs");
        out.push((
            pid,
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ));
    }
    out
}

/// Asserts that of two raced runs exactly one was refused (exit 2) naming the other's pid,
/// and the other was not refused.
pub fn assert_one_refused(results: &[(u32, i32, String)], round: usize) {
    let refused: Vec<_> = results.iter().filter(|r| r.1 == 2).collect();
    assert_eq!(
        refused.len(),
        1,
        "round {round}: exactly one run is refused: {results:#?}"
    );
    let winner = results.iter().find(|r| r.1 != 2).expect("a winner");
    assert!(
        refused[0].2.contains(&format!("pid {}", winner.0)),
        "round {round}: the refusal names the holder (pid {}): {}",
        winner.0,
        refused[0].2
    );
}
