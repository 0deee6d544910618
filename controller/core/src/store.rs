//! The port where run state is persisted after every step.

use async_trait::async_trait;

use crate::run::RunState;

/// Persists and loads run state.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Saves the state; must be atomic (a crash leaves the old or the new state, never half).
    async fn save(&self, state: &RunState) -> Result<(), StoreError>;
    /// Loads the last saved state, if any.
    async fn load(&self) -> Result<Option<RunState>, StoreError>;
    /// A description for logs.
    fn describe(&self) -> String;
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
