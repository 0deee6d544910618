//! `cutover bench` as the README names it: the acceptance numbers, printed and
//! checked by the benchmark itself in one run (`--check` exits 1 when one fails), and the
//! same table for the same seed.

use cutover_tests::cli::cutover;

fn bench(args: &[&str]) -> (i32, String) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    cutover(&all)
}

#[test]
fn the_acceptance_checks_pass_with_1000_runs_per_scenario() {
    let (code, text) = bench(&[
        "--runs",
        "1000",
        "--scenario",
        "healthy-1pct,step-1-5,traffic-1000rps,slow-leak-1000rps,common-rise-at-100",
        "--check",
    ]);
    assert_eq!(code, 0, "an acceptance check failed:\n{text}");
    let checks: Vec<&str> = text.lines().filter(|l| l.starts_with("* PASS")).collect();
    assert_eq!(
        checks.len(),
        8,
        "every acceptance check is printed:\n{text}"
    );
    assert!(!text.contains("* FAIL"), "{text}");
}

#[test]
fn the_same_seed_prints_the_same_table_and_bad_names_are_refused() {
    let args = [
        "--runs",
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
