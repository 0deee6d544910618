//! The commands of the `cutover` binary, one module each; `main.rs` parses the arguments
//! and calls one of them. Each returns the process's exit code.
//!
//! * [`validate`], [`plan`], [`schema`] — policy files: check, explain, the JSON Schema;
//! * [`run`] — a cutover against live traffic;
//! * [`status`] — the live weights, the lock and the persisted run;
//! * [`rollback`] — the emergency brake;
//! * [`fleet`](mod@fleet) — a site failed back as a fleet of cutovers;
//! * [`operate`] — pause, resume, promote, abort, approve a live run;
//! * [`backtest`], [`tune`] — a policy replayed over its service's history; bounds
//!   suggested from it;
//! * [`demo`], [`bench`](mod@bench) — simulated cutovers: a demo, and the judges' benchmark;
//! * [`docs`] — shell completions and the man page;
//! * [`manifests`] — the Kubernetes objects that run a policy as a Job;
//! * [`out`] — stdout and stderr that never panic, and `--quiet`;
//! * [`common`], [`output`] — options, state and backend opening, signals; log format and
//!   progress output.

pub(crate) mod backtest;
pub(crate) mod bench;
pub(crate) mod common;
pub(crate) mod demo;
pub(crate) mod docs;
pub(crate) mod fleet;
pub(crate) mod fleet_k8s;
pub(crate) mod fleet_watch;
pub(crate) mod manifests;
pub(crate) mod operate;
pub(crate) mod out;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod plan_predict;
pub(crate) mod rollback;
pub(crate) mod run;
pub(crate) mod schema;
pub(crate) mod status;
pub(crate) mod tune;
pub(crate) mod validate;

use std::path::Path;

use cutover_core::policy::{self, LoadedPolicy};
use cutover_core::run::Outcome;

/// Exit code of a bad policy or bad usage.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code of a rollback that could not be applied: page now.
pub(crate) const EXIT_ROLLBACK_FAILED: u8 = 10;

/// The `tracing` target of the commands' own log events: `cutover`, as when they lived in
/// `main.rs`, so log filters and pipelines that select on it keep working.
pub(crate) const LOG_TARGET: &str = "cutover";

/// Loads a policy file, or prints every problem found and returns `None` (exit
/// [`EXIT_USAGE`]).
pub(crate) fn load_or_report(path: &Path) -> Option<LoadedPolicy> {
    match policy::load(path) {
        Ok(p) => Some(p),
        Err(errors) => {
            out::err(&errors.to_string());
            None
        }
    }
}

/// The exit code of a run's outcome; a rollback that could not be applied is also said
/// loudly (PAGE NOW) on stderr and in the logs.
pub(crate) fn report_outcome(o: &Outcome) -> u8 {
    let code = o.exit_code();
    if code == i32::from(EXIT_ROLLBACK_FAILED) {
        tracing::error!(target: LOG_TARGET, "PAGE NOW: {}", o.reason);
        out::err(&format!("cutover: PAGE NOW: {}", o.reason));
    }
    code as u8
}
