//! The driver's side of readiness: running `guards:` beside every analysis, and before the
//! first write (so capacity for the first stage's weight is checked too). The checks
//! themselves are in `cutover_analyzers::readiness`; what their results mean, in
//! `cutover_core::readiness` and the run's `guards.rs`.

use std::time::SystemTime;

use cutover_analyzers::Analyzer;
use cutover_core::judge::preflight::{PreflightCheck, PreflightResult};
use cutover_core::run::Run;

use crate::driver::Driver;

/// The guards' results at `now` (none when the policy has none).
pub async fn guards(
    analyzer: &Analyzer,
    guards: &[PreflightCheck],
    now: SystemTime,
) -> Vec<PreflightResult> {
    if guards.is_empty() {
        return Vec::new();
    }
    cutover_analyzers::readiness::run_checks(analyzer.source().as_ref(), guards, now).await
}

/// The guards checked with preflight, named `guard <name>`: one that fails before the first
/// write waits as long as the longest preflight `wait`, then fails preflight.
pub async fn guards_before_start(driver: &Driver, run: &Run) -> Vec<PreflightResult> {
    let now = driver.clock.now();
    let mut out = guards(&driver.analyzer, &run.plan().readiness.guards, now).await;
    for r in &mut out {
        r.name = format!("{}{}", cutover_core::readiness::GUARD_PREFIX, r.name);
    }
    out
}
