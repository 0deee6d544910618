//! What a CLI owes its shell: no panic when stdout or stderr is closed (`cutover plan P |
//! head -1`, a log shipper gone), shell completions and a man page, `--quiet`, and JSON logs
//! whose run events a pipeline queries without a second parse.

use std::io::Read;
use std::process::{Command, Stdio};

use serde_json::Value;

use cutover_tests::cli::cutover;
use cutover_tests::{TempDir, cutover_bin, workspace};

/// Runs `cutover ARGS` with stdout (or stderr) closed before it writes anything — the worst
/// case of `| head -1` — and returns its exit code and what it wrote on the other stream.
fn with_closed(stream: &str, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(cutover_bin());
    cmd.args(args)
        .current_dir(workspace())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("cutover starts");
    let mut other = if stream == "stdout" {
        drop(child.stdout.take());
        child.stderr.take().unwrap()
    } else {
        drop(child.stderr.take());
        // A reader on stdout must keep reading, or a full pipe would block the child.
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        return (child.wait().unwrap().code().unwrap_or(-1), String::new());
    };
    let mut text = String::new();
    other.read_to_string(&mut text).unwrap();
    (child.wait().unwrap().code().unwrap_or(-1), text)
}

#[test]
fn a_closed_stdout_or_stderr_never_panics() {
    let dir = TempDir::new("closed-pipe");
    let demo_dir = dir.path().to_str().unwrap();
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["validate", "policies/checkout.yaml"], 0),
        (vec!["plan", "policies/checkout.yaml"], 0),
        (vec!["schema"], 0),
        (
            vec![
                "status",
                "policies/demo.yaml",
                "--state-file",
                "/nonexistent/state.json",
            ],
            0,
        ),
        (vec!["demo", "--speed", "0", "--dir", demo_dir], 0),
        (vec!["manifests", "policies/checkout.yaml"], 0),
        (vec!["completions", "bash"], 0),
        (vec!["man"], 0),
        (vec!["--help"], 0),
    ];
    for (args, code) in &cases {
        let (got, stderr) = with_closed("stdout", args);
        assert!(
            !stderr.contains("panicked")
                && !stderr.contains("Broken pipe")
                && !stderr.contains("backtrace"),
            "cutover {args:?} with stdout closed:\n{stderr}"
        );
        assert_eq!(
            got, *code,
            "cutover {args:?} with stdout closed keeps its exit code:\n{stderr}"
        );
    }
    // With stderr closed: the JSON logs of a demo, and the problems of a broken policy.
    let (got, _) = with_closed(
        "stderr",
        &[
            "--log-format",
            "json",
            "demo",
            "--scenario",
            "error-spike",
            "--speed",
            "0",
            "--dir",
            demo_dir,
        ],
    );
    assert_eq!(got, 1, "the demo's own exit code with stderr closed");
    let (got, _) = with_closed("stderr", &["validate", "/nonexistent/policy.yaml"]);
    assert_eq!(got, 2);
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    let (code, bash) = cutover(&["completions", "bash"]);
    assert_eq!(code, 0, "{bash}");
    assert!(
        bash.contains("_cutover()") && bash.contains("manifests"),
        "{bash}"
    );
    for shell in ["zsh", "fish"] {
        let (code, out) = cutover(&["completions", shell]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("validate"), "{shell}: {out}");
    }
    let (code, man) = cutover(&["man"]);
    assert_eq!(code, 0, "{man}");
    assert!(man.contains(".TH cutover"), "{man}");
    assert!(
        man.contains("manifests") && man.contains("rollback"),
        "{man}"
    );
}

#[test]
fn quiet_prints_only_the_final_outcome_line() {
    let dir = TempDir::new("quiet");
    let (code, out) = cutover(&[
        "--quiet",
        "demo",
        "--scenario",
        "error-spike",
        "--speed",
        "0",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with("finished   RolledBack (exit 1)"),
        "{out}"
    );
}

#[test]
fn json_logs_nest_the_event_so_a_rollback_is_queried_without_a_second_parse() {
    let dir = TempDir::new("json-logs");
    let out = Command::new(cutover_bin())
        .args([
            "--log-format",
            "json",
            "demo",
            "--scenario",
            "error-spike",
            "--speed",
            "0",
            "--dir",
        ])
        .arg(dir.path())
        .current_dir(workspace())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {l}"))
        })
        .collect();
    let events: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "cutover::console")
        .collect();
    assert!(!events.is_empty(), "{stderr}");
    for e in &events {
        for field in ["timestamp", "level"] {
            assert!(e[field].is_string(), "{field}: {e}");
        }
        for field in ["message", "service", "run_id"] {
            assert!(e["fields"][field].is_string(), "fields.{field}: {e}");
        }
        assert!(
            e["fields"]["event"].is_object(),
            "fields.event is an object: {e}"
        );
        assert!(e["fields"]["event"]["kind"].is_string(), "{e}");
    }
    // The documented query: the rollback's confirmed write, read straight off the line.
    let started = events
        .iter()
        .position(|e| e["fields"]["event"]["kind"] == "rollback_started")
        .unwrap_or_else(|| panic!("no rollback_started event:\n{stderr}"));
    assert_eq!(events[started]["level"], "WARN");
    let back = events[started..]
        .iter()
        .find(|e| e["fields"]["event"]["kind"] == "weight_confirmed")
        .unwrap_or_else(|| panic!("no confirmed rollback write:\n{stderr}"));
    assert_eq!(back["fields"]["event"]["weights"]["primary"], 0, "{back}");
    assert_eq!(back["fields"]["event"]["weights"]["dr"], 100, "{back}");
    let last = events.last().unwrap();
    assert_eq!(last["fields"]["event"]["kind"], "finished");
    assert_eq!(
        last["fields"]["event"]["outcome"]["phase"], "rolled_back",
        "{last}"
    );
}
