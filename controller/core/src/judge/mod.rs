//! Judging: gates, their e-processes and verdicts — from readings to "promote, hold or
//! roll back". Pure: the readings come in as values.

pub mod analysis;
pub mod eprocess;
pub mod gate;
pub mod preflight;
pub mod verdict;
