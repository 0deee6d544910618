//! The port the fleet driver runs cutovers through: one implementation per way of running
//! them (child processes here; Kubernetes Jobs).

use async_trait::async_trait;
use cutover_core::fleet::FleetService;

/// A cutover that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The service.
    pub service: String,
    /// Its exit code (DESIGN.md's: 0 promoted, 1 rolled back, 3, 4, 5, 10).
    pub exit: i32,
    /// Its outcome's reason, as recorded by the run (or what is known).
    pub reason: String,
}

/// Runs, watches, aborts and rolls back the cutovers of a fleet's services.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Starts `service`'s cutover, as run `run_id` (a restarted orchestrator starts a
    /// service again with the same id: its run resumes).
    async fn start(&self, service: &FleetService, run_id: &str) -> Result<(), String>;
    /// The cutovers that ended since the last call.
    async fn poll(&self) -> Vec<Ended>;
    /// Asks the running cutover of `service` to roll back now (`cutover abort`).
    async fn abort(&self, service: &FleetService) -> Result<(), String>;
    /// Puts all of `service`'s traffic on DR, verified (`cutover rollback`): what it did.
    async fn rollback(&self, service: &FleetService) -> Result<String, String>;
    /// The cutover record of `service` (its exit code and reason), if it has finished:
    /// how a restarted orchestrator learns what ended while it was away. Only a record of
    /// run `run_id` counts (a state left by an earlier fleet run is not this one's).
    async fn finished(&self, service: &FleetService, run_id: &str) -> Option<Ended>;
    /// Whether `service`'s run `run_id` is unfinished and driven by another process (a
    /// child left running by a killed orchestrator): then a start refused with exit 2 is
    /// watched through its record, not counted as a failure.
    async fn driven_elsewhere(&self, _service: &FleetService, _run_id: &str) -> bool {
        false
    }
    /// For logs.
    fn describe(&self) -> String;
}
