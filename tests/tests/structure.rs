//! The architecture, checked: the decision core stays pure, and no file outgrows its room
//! (see ARCHITECTURE.md).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

#[test]
fn the_core_depends_on_no_runtime_http_kubernetes_or_aws_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "cutover-core",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .output()
        .expect("cargo runs");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && tree.contains("cutover-core"),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let forbidden: Vec<&str> = tree
        .lines()
        .filter(|l| {
            let name = l.split_whitespace().next().unwrap_or("");
            ["tokio", "reqwest", "hyper", "kube", "k8s-openapi", "aws-"]
                .iter()
                .any(|f| name.starts_with(f))
        })
        .collect();
    assert!(
        forbidden.is_empty(),
        "cutover-core must stay pure, but depends on: {forbidden:?}"
    );
    for crate_name in ["cutover-analyzers", "cutover-backends", "cutover "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(crate_name)),
            "cutover-core must not depend on {crate_name}"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source tree") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_rust_file_outgrows_its_room() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["controller", "analyzers", "backends", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut too_long = Vec::new();
    for f in &files {
        let lines = std::fs::read_to_string(f)
            .expect("readable")
            .lines()
            .count();
        let limit = if f.ends_with("controller/src/main.rs") {
            300
        } else {
            700
        };
        if lines > limit {
            too_long.push(format!(
                "{}: {lines} lines (at most {limit})",
                f.strip_prefix(&root).unwrap_or(f).display()
            ));
        }
    }
    assert!(
        too_long.is_empty(),
        "split these by what they do (ARCHITECTURE.md): {too_long:#?}"
    );
}
