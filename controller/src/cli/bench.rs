//! `cutover bench`: four judges on the same seeded simulated cutovers; prints the table of
//! BENCHMARKS.md and the acceptance checks.

use cutover::bench::{self, judges, scenarios};

use super::EXIT_USAGE;

/// Runs the benchmark and prints its table; with `check`, exit 1 if an acceptance check
/// fails; exit 2 for an unknown scenario.
pub(crate) async fn bench(
    runs: usize,
    seed: u64,
    only: Vec<String>,
    judges: Vec<judges::Judge>,
    jobs: usize,
    check: bool,
) -> anyhow::Result<u8> {
    let all = scenarios::all();
    for name in &only {
        if !all.iter().any(|s| s.name == name) {
            let names: Vec<&str> = all.iter().map(|s| s.name).collect();
            super::out::err(&format!(
                "error: --scenario {name}: no such scenario; choose from {}",
                names.join(", ")
            ));
            return Ok(EXIT_USAGE);
        }
    }
    let judges = if judges.is_empty() {
        judges::ALL.to_vec()
    } else {
        judges
    };
    let started = std::time::Instant::now();
    super::out::line(&format!(
        "cutover bench --runs {runs} --seed {seed}: {} runs per scenario and judge, 100/1000 rps as named, 15 s scrape and analysis interval, stages 10/25/50/75/100 %\n",
        runs
    ));
    super::out::line(bench::TABLE_HEADER);
    let mut results = Vec::new();
    for sc in all
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.name))
    {
        for j in &judges {
            let records = bench::run_many(*j, sc, runs, seed, jobs).await?;
            let s = bench::summarize(sc, *j, &records);
            super::out::line(&bench::table_row(&s));
            results.push(s);
        }
    }
    super::out::line("\nScenarios:\n");
    for sc in all
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.name))
    {
        super::out::line(&format!("* `{}`: {}", sc.name, sc.description));
    }
    let checks = bench::acceptance(&results);
    let mut failed = 0;
    if !checks.is_empty() {
        super::out::line("\nAcceptance checks:\n");
        for (what, ok) in &checks {
            super::out::line(&format!("* {} {what}", if *ok { "PASS" } else { "FAIL" }));
            failed += usize::from(!ok);
        }
    }
    super::out::line(&format!(
        "\n({} runs in {:.0} s of wall time)",
        results.iter().map(|s| s.runs).sum::<usize>(),
        started.elapsed().as_secs_f64()
    ));
    Ok(if check && failed > 0 { 1 } else { 0 })
}
