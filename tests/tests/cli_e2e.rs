//! The command line as a newcomer and a runbook use it: the demo's scenarios and exit codes,
//! `validate` on the shipped policies and on broken ones, `status` and `rollback`.

use std::time::{Duration, Instant};

use cutover_tests::cli::cutover;
use cutover_tests::{TempDir, workspace};

#[test]
fn every_demo_scenario_ends_as_documented() {
    for (scenario, code, weights) in [
        ("healthy", 0, "0 -> 10 -> 25 -> 50 -> 75 -> 100"),
        ("error-spike", 1, "0 -> 10 -> 25 -> 0"),
        ("latency-regression", 1, "0 -> 10 -> 25 -> 50 -> 0"),
        ("no-traffic", 5, "0 -> 10\n"),
        ("global-incident", 5, "0 -> 10 -> 25\n"),
    ] {
        let dir = TempDir::new(scenario);
        let (got, out) = cutover(&[
            "demo",
            "--scenario",
            scenario,
            "--speed",
            "0",
            "--dir",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(got, code, "{scenario}:\n{out}");
        assert!(
            out.contains(&format!("weights:  {weights}")),
            "{scenario}:\n{out}"
        );
        let live = std::fs::read_to_string(dir.path().join("weights.json")).unwrap();
        let last: u8 = weights
            .trim()
            .rsplit(" -> ")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            live.contains(&format!("\"primary\":{last}")),
            "{scenario}: file says {live}"
        );
    }
}

#[test]
fn the_healthy_demo_promotes_in_under_30_seconds_at_its_default_speed() {
    let dir = TempDir::new("demo-speed");
    let t = Instant::now();
    let (code, out) = cutover(&["demo", "--dir", dir.path().to_str().unwrap()]);
    let took = t.elapsed();
    println!("healthy demo at the default speed took {took:?}");
    assert_eq!(code, 0, "{out}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn validate_accepts_the_shipped_policies_and_reports_every_broken_one() {
    let mut args = vec!["validate".to_string()];
    for e in std::fs::read_dir(workspace().join("policies")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            args.push(p.display().to_string());
        }
    }
    assert!(args.len() >= 4);
    let (code, out) = cutover(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");

    let dir = TempDir::new("validate");
    let good = std::fs::read_to_string(workspace().join("policies/checkout.yaml")).unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, good.replace("  - weight: 50\n", "  - weight: 150\n")).unwrap();
    std::fs::write(&b, good.replace("bake: 5m ", "bake: soon ")).unwrap();
    let (code, out) = cutover(&["validate", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("a.yaml: stages[2].weight: 150 is above 100"),
        "{out}"
    );
    assert!(
        out.contains("b.yaml: defaults.bake: `soon` is not a duration"),
        "{out}"
    );
}

#[test]
fn status_and_rollback_on_the_file_backend() {
    let dir = TempDir::new("status");
    let weights = dir.path().join("w.json");
    std::fs::write(&weights, r#"{"primary":50,"dr":50}"#).unwrap();
    let policy = std::fs::read_to_string(workspace().join("policies/batch-file.yaml"))
        .unwrap()
        .replace(
            "/var/run/cutover/batch-api-weights.json",
            weights.to_str().unwrap(),
        );
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, policy).unwrap();
    let state = dir.path().join("state.json");
    let (code, out) = cutover(&[
        "status",
        p.to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("primary 50% / dr 50%"), "{out}");
    let (code, out) = cutover(&["rollback", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified by reading back"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&weights).unwrap().trim(),
        r#"{"primary":0,"dr":100}"#
    );
}
