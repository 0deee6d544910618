//! `cutover bench`: four judges on the same seeded simulated cutovers; prints the table of
//! BENCHMARKS.md and the acceptance checks.

use cutover::bench::{self, judges, scenarios};

use super::EXIT_USAGE;

/// `cutover bench`'s options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Seeded runs per scenario and judge.
    #[arg(long, default_value_t = 1000)]
    pub(crate) runs: usize,
    /// At least this many runs where the primary is acceptable (a false-rollback rate
    /// <= 1 % is claimed there).
    #[arg(long, default_value_t = 2000)]
    pub(crate) rate_runs: usize,
    /// Seconds of history generated before each run (DR at 100 %), for every scenario.
    #[arg(long, default_value_t = cutover_analyzers::simulated::WARMUP.as_secs())]
    pub(crate) warmup_secs: u64,
    /// The sequential judges' `vs_dr.beta` (each stage's false-certification budget), e.g.
    /// 0.3 to measure faster certification at its cost; default: the policy default (0.05).
    #[arg(long, value_parser = parse_beta)]
    pub(crate) beta: Option<f64>,
    /// The first seed; run i uses seed + i.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Only these scenarios (comma-separated names); default: all.
    #[arg(long, value_delimiter = ',')]
    pub(crate) scenario: Vec<String>,
    /// Only these judges; default: all four.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) judge: Vec<cutover::bench::judges::Judge>,
    /// Runs in flight at once.
    #[arg(long, default_value_t = 32)]
    pub(crate) jobs: usize,
    /// Exit 1 if an acceptance check fails.
    #[arg(long)]
    pub(crate) check: bool,
}

fn parse_beta(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(b) if b > 0.0 && b < 1.0 => Ok(b),
        _ => Err(format!(
            "{s} is not a beta; write a number between 0 and 1, e.g. 0.3"
        )),
    }
}

/// Runs the benchmark and prints its table: `runs` runs per scenario and judge, at least
/// `rate_runs` where the primary is acceptable, each after `warmup_secs` of history; with
/// `check`, exit 1 if an acceptance check fails; exit 2 for an unknown scenario.
pub(crate) async fn bench(args: BenchArgs) -> anyhow::Result<u8> {
    let BenchArgs {
        runs,
        rate_runs,
        warmup_secs,
        beta,
        seed,
        scenario: only,
        judge: judges,
        jobs,
        check,
    } = args;
    let warmup = std::time::Duration::from_secs(warmup_secs);
    let mut all = scenarios::all();
    for sc in &mut all {
        sc.warmup = warmup;
        sc.beta = beta;
    }
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
        "cutover bench --runs {runs} --rate-runs {rate_runs} --seed {seed}{}: {runs} runs per scenario and judge, {} where the primary is acceptable (the same seeds for every judge), 100/1000 rps as named, 15 s scrape and analysis interval, stages 10/25/50/75/100 %\n",
        beta.map(|b| format!(" --beta {b}")).unwrap_or_default(),
        runs.max(rate_runs)
    ));
    super::out::line(bench::TABLE_HEADER);
    let mut results = Vec::new();
    for sc in all
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.name))
    {
        for j in &judges {
            let n = bench::runs_for(sc, runs, rate_runs);
            let records = bench::run_many(*j, sc, n, seed, jobs).await?;
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
        super::out::line(&format!(
            "* `{}` ({}, {} runs): {}",
            sc.name,
            if sc.acceptable {
                "acceptable"
            } else {
                "regression"
            },
            bench::runs_for(sc, runs, rate_runs),
            sc.description
        ));
    }
    let checks = bench::acceptance(&results, beta);
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
