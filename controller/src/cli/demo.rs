//! `cutover demo`: a cutover on simulated traffic and the file backend, in accelerated time.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use cutover::demo::{DemoOptions, DemoScenario};
use cutover::observe::report::Report;
use cutover_core::run::Outcome;

use super::common::signals;
use super::output::console;
use super::report_outcome;

/// Plays a demo, optionally writes its report, and prints the verdict; the exit code is the
/// run's.
pub(crate) async fn demo(
    scenario: DemoScenario,
    speed: f64,
    seed: u64,
    dir: Option<PathBuf>,
    report_dir: Option<PathBuf>,
    json_logs: bool,
) -> anyhow::Result<u8> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cutover-demo-{}", std::process::id()))
    });
    let speed = if speed <= 0.0 { f64::INFINITY } else { speed };
    super::out::chatter(&format!(
        "cutover demo: scenario {scenario:?}, simulated traffic, file backend in {}, {}x time",
        dir.display(),
        speed
    ));
    let wall = std::time::Instant::now();
    let opts = DemoOptions {
        scenario,
        speed,
        seed,
        dir,
    };
    let console = console();
    let mut observers = vec![console];
    if json_logs {
        // Asked for `--log-format json`: the run's events as JSON log lines on stderr too,
        // as a real run logs them.
        observers.push(Arc::new(cutover::observe::console::LogObserver));
    }
    let report = Arc::new(Report::default());
    let result = cutover::demo::run_demo(
        opts,
        {
            observers.push(report.clone());
            observers
        },
        signals(),
    )
    .await?;
    if let Some(d) = &report_dir {
        report
            .write(d, result.run.state(), &result.outcome)
            .with_context(|| format!("cannot write the report to {}", d.display()))?;
        super::out::chatter(&format!("report:   {}", d.join("report.md").display()));
    }
    let (outcome, state) = (&result.outcome, result.run.state());
    let outcome: &Outcome = outcome;
    super::out::chatter("");
    super::out::chatter(&format!(
        "verdict:  {:?} (exit {})",
        outcome.phase,
        outcome.exit_code()
    ));
    super::out::chatter(&format!("why:      {}", outcome.reason));
    super::out::chatter(&format!(
        "weights:  {}",
        std::iter::once("0".to_string())
            .chain(
                state
                    .history
                    .iter()
                    .map(|h| h.weights.primary().to_string())
            )
            .collect::<Vec<_>>()
            .join(" -> ")
    ));
    super::out::chatter(&format!(
        "time:     {} of simulated cutover in {:.1}s",
        cutover_core::run::fmt_d(result.elapsed),
        wall.elapsed().as_secs_f64()
    ));
    Ok(report_outcome(outcome))
}
