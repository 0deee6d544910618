//! The port where run state is persisted after every step.

use async_trait::async_trait;

use crate::run::RunState;

/// Persists and loads run state.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Saves the state; must be atomic (a crash leaves the old or the new state, never half).
    async fn save(&self, state: &RunState) -> Result<(), String>;
    /// Loads the last saved state, if any.
    async fn load(&self) -> Result<Option<RunState>, String>;
    /// A description for logs.
    fn describe(&self) -> String;
}
