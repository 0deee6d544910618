//! `cutover`: the progressive traffic controller and canary analyzer for the cutover phase
//! of a disaster-recovery failback — the parts around the pure core (`cutover-core`: policy,
//! plan, gates, the run state machine and its ports) that touch the outside world.
//!
//! * [`driver`] — performs what the run asks for (preflight, verified weight writes, sleeps,
//!   analyses) against a backend, a metric source and a clock; the write step and retry
//!   backoff that `cutover rollback` shares;
//! * [`clock`] — real time, or virtual time for simulations;
//! * [`lock`] — one writer per traffic object: taking, renewing and releasing its lock, and
//!   the operator's brake;
//! * [`observe`] — who hears about a run's events: console, report, telemetry, webhook
//!   notifications, Kubernetes Events;
//! * [`simulated_backend`] — the backend of simulated cutovers, which simulated traffic follows;
//! * [`manifests`] — the Kubernetes objects that run a policy as a Job (`cutover manifests`);
//! * [`demo`] — a cutover on simulated traffic and the file backend (`cutover demo`);
//! * [`backtest`] — the real run replayed over a past window of Prometheus (`cutover backtest`);
//! * [`tune`] — bounds suggested from a service's own history (`cutover tune`);
//! * [`bench`](mod@bench) — four judges on the same seeded simulated cutovers (`cutover bench`).
//!
//! The command line itself (one module per command) is the binary's, in `src/cli/`.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod backtest;
pub mod bench;
pub mod clock;
pub mod demo;
pub mod driver;
pub mod fleet;
pub mod lock;
pub mod manifests;
pub mod observe;
pub mod predict;
pub mod readiness;
pub mod simulated_backend;
pub mod tune;
