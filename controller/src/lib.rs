//! `cutover`: the progressive traffic controller and canary analyzer for the cutover phase
//! of a disaster-recovery failback.
//!
//! * [`policy`] — the policy file: model, loading, validation, plan;
//! * [`run`] — the pure state machine;
//! * [`driver`] — performs what the run asks for, against a backend, a metric source and a clock;
//! * [`clock`], [`store`], [`console`] — time, persisted state, progress output;
//! * [`demo`], [`plan`] — the `demo` and `plan` commands.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod bench;
pub mod clock;
pub mod demo;
pub mod driver;
pub mod lock;
pub mod observe;
pub mod simulated_backend;
