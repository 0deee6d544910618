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
    // A write refused (a read-only file) while traffic already reads all on DR is no page:
    // traffic is where the operator asked, as a run's rollback also concludes.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&weights, std::fs::Permissions::from_mode(0o444)).unwrap();
    let (code, out) = cutover(&["rollback", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("read-only"), "{out}");
    assert!(out.contains("already read all on DR"), "{out}");
    assert!(!out.contains("PAGE NOW"), "{out}");
}

/// Runs `cutover validate FILE` and returns its exit code (`None`: killed by a signal),
/// its output and its peak resident memory in KB, read from the kernel's accounting of the
/// child (`wait4`'s `ru_maxrss`) — exact, whatever threads this test process runs. The
/// child runs under a 4 GB address-space limit, so a regression fails the test instead of
/// exhausting the machine.
#[allow(unsafe_code)]
fn validate_peak_kb(file: &std::path::Path) -> (Option<i32>, String, i64) {
    use std::process::{Command, Stdio};
    let dir = TempDir::new("validate-out");
    let out = dir.path().join("out.txt");
    // Reaped below by wait4, which also reads its resource usage; `Child::wait` cannot.
    #[allow(clippy::zombie_processes)]
    let child = Command::new("bash")
        .arg("-c")
        .arg("ulimit -v 4000000 && exec \"$0\" validate \"$1\" >\"$2\" 2>&1")
        .arg(cutover_tests::cutover_bin())
        .arg(file)
        .arg(&out)
        .stdin(Stdio::null())
        .spawn()
        .expect("bash runs");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 writes only into our two locals, for
    // a child of ours that nothing else waits for (`child` is never waited on).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    (code, text, usage.ru_maxrss)
}

/// Hostile policies of at most 64 KB — alias bombs, nesting, huge lists and scalars,
/// control bytes, extreme numbers, and seeded random mixes of them — are refused with
/// exit 2, and `cutover validate` stays under 64 MB of memory on every one. Before the
/// screening of policy text, 1 KB of nested aliases took 1.8 GB (6 levels) to over 10 GB.
#[test]
fn validating_any_64k_policy_stays_under_64_mb() {
    use rand::{Rng, SeedableRng};
    const LIMIT: usize = 64 * 1024;
    let good = std::fs::read_to_string(workspace().join("policies/checkout.yaml")).unwrap();
    let bomb = |levels: usize, fanout: usize, leaf: &str| {
        let mut t = format!("{good}\nb0: &b0 [{}]\n", vec![leaf; fanout].join(", "));
        for i in 1..levels {
            let refs = vec![format!("*b{}", i - 1); fanout].join(", ");
            t.push_str(&format!("b{i}: &b{i} [{refs}]\n"));
        }
        t
    };
    let mut cases: Vec<(String, String)> = vec![
        ("6 levels of 10 aliases".into(), bomb(6, 10, "lol")),
        ("8 levels of 10 aliases".into(), bomb(8, 10, "lol")),
        ("30 levels of 2 aliases".into(), bomb(30, 2, "lol")),
        (
            "aliases of a 50 KB scalar".into(),
            format!(
                "{good}\nbig: &big {}\nrefs: [{}]\n",
                "z".repeat(50_000),
                vec!["*big"; 1000].join(", ")
            ),
        ),
        (
            "aliases of a map".into(),
            bomb(5, 12, "{a: [1, 2, 3], b: {c: d}}"),
        ),
        // Just inside the screening limits: these reach the YAML loader and expand.
        ("4 levels of 10 aliases".into(), bomb(4, 10, "lol")),
        (
            "1 MB of text through aliases".into(),
            format!(
                "{good}\nbig: &big {}\nrefs: [{}]\n",
                "z".repeat(50_000),
                vec!["*big"; 19].join(", ")
            ),
        ),
        ("deep nesting".into(), format!("a: {}", "[".repeat(60_000))),
        (
            "a flat list".into(),
            format!("a: [{}]", vec!["1"; 30_000].join(",")),
        ),
        (
            "many keys".into(),
            (0..5000).map(|i| format!("k{i}: {i}\n")).collect(),
        ),
        (
            "NUL before on_signal".into(),
            format!("{good}\n\0\non_signal: rollback\n"),
        ),
        ("extreme numbers".into(), {
            good.replace("max: 1000", "max: 1e999")
                .replace("failure_limit: 2", "failure_limit: 18446744073709551616")
        }),
    ];
    let pieces = [
        "&a [",
        "*a, ",
        "]",
        "{",
        "}",
        "[",
        "\0",
        "\u{feff}",
        ".nan",
        "-.inf",
        "1e999",
        "&b ",
        "*b",
        ": ",
        "- ",
        "\n",
        "x",
        "4294967295",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6464);
    for i in 0..24 {
        let mut t = String::new();
        while t.len() < LIMIT - 64 {
            t.push_str(pieces[rng.random_range(0..pieces.len())]);
        }
        cases.push((format!("random mix {i}"), t));
    }
    let dir = TempDir::new("hostile");
    let baseline = dir.path().join("good.yaml");
    std::fs::write(&baseline, &good).unwrap();
    let (code, out, good_kb) = validate_peak_kb(&baseline);
    assert_eq!(code, Some(0), "{out}");
    println!("a good policy: {good_kb} KB peak");
    for (name, text) in cases {
        assert!(text.len() <= LIMIT, "{name}: {} bytes", text.len());
        let file = dir.path().join("hostile.yaml");
        std::fs::write(&file, &text).unwrap();
        let (code, out, kb) = validate_peak_kb(&file);
        println!("{name}: exit {code:?}, {kb} KB peak");
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(
            out.contains("hostile.yaml: "),
            "{name}: names the file: {out}"
        );
        assert!(kb < 64 * 1024, "{name}: {kb} KB peak\n{out}");
    }
}

/// `cutover plan` predicts, per stage and sequential gate, the time to certify a healthy
/// primary from `--rps` (or Prometheus), and warns where `max_duration` makes a hold likely.
#[test]
fn plan_predicts_the_time_to_certify_and_warns_of_likely_holds() {
    let dir = TempDir::new("plan-predict");
    let policy = workspace().join("policies/web-sequential.yaml");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("http://prometheus.monitoring:9090", "http://127.0.0.1:9");
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, &text).unwrap();
    let file = file.to_str().unwrap();
    let (code, out) = cutover(&["plan", file, "--rps", "1000", "--bad-rate", "0.01"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Predicted time to certify a healthy primary"),
        "{out}"
    );
    let rows = out
        .lines()
        .filter(|l| l.trim_start().starts_with("10%") && l.contains("errors-vs-dr"))
        .count();
    assert_eq!(rows, 1, "a row for the 10 % stage:\n{out}");
    assert!(
        !out.contains("warning: at"),
        "1000 rps certifies in time:\n{out}"
    );
    // A quiet service: the first stage is warned about.
    let (code, out) = cutover(&["plan", file, "--rps", "5", "--bad-rate", "0.01"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: at 10% the gate errors-vs-dr is not certified"),
        "{out}"
    );
    // No Prometheus and no --rps: said, not guessed; --no-predict leaves it out.
    let (code, out) = cutover(&["plan", file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pass --rps"), "{out}");
    let (_, out) = cutover(&["plan", file, "--no-predict"]);
    assert!(!out.contains("Predicted time"), "{out}");
}
