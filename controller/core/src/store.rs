//! The port where run state is persisted after every step.

use async_trait::async_trait;

use crate::run::{Command, RunState};

/// Persists and loads run state.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Saves the state; must be atomic (a crash leaves the old or the new state, never half).
    async fn save(&self, state: &RunState) -> Result<(), StoreError>;
    /// Loads the last saved state, if any.
    async fn load(&self) -> Result<Option<RunState>, StoreError>;
    /// A description for logs.
    fn describe(&self) -> String;
    /// Posts an operator command for the run that saves here, beside its state (never in
    /// it: the run overwrites its state at every step, and would lose a command written
    /// there). Never loses or overwrites another command posted at the same time.
    async fn post_command(&self, command: &Command) -> Result<(), StoreError>;
    /// The commands posted and not yet forgotten, oldest first.
    async fn commands(&self) -> Result<Vec<Command>, StoreError>;
    /// Forgets commands by id (the run acknowledged them in its state, or they are for a
    /// run that is over).
    async fn forget_commands(&self, ids: &[String]) -> Result<(), StoreError>;
}

/// Why run state could not be saved or loaded. The message names the place and the action,
/// e.g. `cannot write the run state to ConfigMap ops/cutover-checkout: forbidden: ...`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be read or written (I/O, the API server, encoding).
    #[error("{action} {place}: {detail}")]
    Access {
        /// What failed, e.g. `cannot write`.
        action: &'static str,
        /// The file or object.
        place: String,
        /// The underlying error.
        detail: String,
    },
    /// The store holds something that is not a run state.
    #[error("{place} does not hold a run state: {detail}")]
    NotAState {
        /// The file or object.
        place: String,
        /// What the decoder said.
        detail: String,
    },
}
