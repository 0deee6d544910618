//! Where a fleet's state is kept between the driver's steps: a folder on this machine
//! (`fleet.json` and an `abort` file), or, for `--executor kubernetes`, a ConfigMap (keys
//! `fleet.json` and `abort`) whose writer holds the fleet's Lease, so that two
//! orchestrators never drive one fleet and a restarted one resumes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use cutover_backends::state::ConfigMapBlob;
use cutover_core::fleet::FleetState;

use crate::lock::{Ownership, Stop};

/// A fleet's state and its abort mailbox.
#[async_trait]
pub trait FleetStore: Send + Sync {
    /// The saved state, if any.
    async fn load(&self) -> Result<Option<FleetState>, String>;
    /// Saves the state (atomically: the old or the new, never half).
    async fn save(&self, state: &FleetState) -> Result<(), String>;
    /// An operator's abort (who asked), taken: each is seen once.
    async fn take_abort(&self) -> Option<String>;
    /// Posts an abort for the orchestrator (`cutover fleet abort`).
    async fn post_abort(&self, by: &str) -> Result<(), String>;
    /// `Err(why)` when another orchestrator drives the fleet now: this one must stop.
    async fn lost(&self) -> Result<(), String> {
        Ok(())
    }
    /// Where, for people.
    fn describe(&self) -> String;
}

/// The fleet's state in a folder: `fleet.json` and the `abort` file.
pub struct FolderStore {
    dir: PathBuf,
}

impl FolderStore {
    /// The store in `dir`.
    pub fn new(dir: &Path) -> FolderStore {
        FolderStore {
            dir: dir.to_path_buf(),
        }
    }
}

#[async_trait]
impl FleetStore for FolderStore {
    async fn load(&self) -> Result<Option<FleetState>, String> {
        super::driver::load_state(&self.dir)
    }

    async fn save(&self, state: &FleetState) -> Result<(), String> {
        let path = super::driver::state_file(&self.dir);
        let tmp = self.dir.join("fleet.json.tmp");
        let body = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    async fn take_abort(&self) -> Option<String> {
        let file = super::driver::abort_file(&self.dir);
        let by = std::fs::read_to_string(&file).ok()?;
        let _ = std::fs::remove_file(&file);
        Some(by.trim().to_string())
    }

    async fn post_abort(&self, by: &str) -> Result<(), String> {
        let file = super::driver::abort_file(&self.dir);
        std::fs::write(&file, by).map_err(|e| format!("cannot write {}: {e}", file.display()))
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

const STATE_KEY: &str = "fleet.json";
const ABORT_KEY: &str = "abort";

/// The fleet's state in a ConfigMap, written only while its Lease is held (`owner`; `None`
/// for readers: `fleet status`, `fleet abort`).
pub struct ConfigMapFleetStore {
    blob: ConfigMapBlob,
    owner: Option<Ownership>,
}

impl ConfigMapFleetStore {
    /// The store in `blob`, its Lease held by `owner` (for the orchestrator).
    pub fn new(blob: ConfigMapBlob, owner: Option<Ownership>) -> ConfigMapFleetStore {
        ConfigMapFleetStore { blob, owner }
    }

    /// Gives the Lease up (the fleet is over).
    pub async fn release(self) {
        if let Some(o) = self.owner {
            o.release().await;
        }
    }
}

#[async_trait]
impl FleetStore for ConfigMapFleetStore {
    async fn load(&self) -> Result<Option<FleetState>, String> {
        let text = self
            .blob
            .load_key(STATE_KEY)
            .await
            .map_err(|e| format!("cannot read {}: {e}", self.describe()))?;
        match text {
            None => Ok(None),
            Some(t) if t.trim().is_empty() => Ok(None),
            Some(t) => serde_json::from_str(&t).map(Some).map_err(|e| {
                format!(
                    "{} key {STATE_KEY} is not a fleet state: {e}",
                    self.describe()
                )
            }),
        }
    }

    async fn save(&self, state: &FleetState) -> Result<(), String> {
        let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
        self.blob
            .update_key(STATE_KEY, |_| Ok(text.clone()))
            .await
            .map_err(|e| format!("cannot write {}: {e}", self.describe()))
    }

    async fn take_abort(&self) -> Option<String> {
        let seen: Mutex<Option<String>> = Mutex::new(None);
        let current = self.blob.load_key(ABORT_KEY).await.ok().flatten()?;
        if current.trim().is_empty() {
            return None;
        }
        // Emptied with the resourceVersion read: an abort posted meanwhile is not lost.
        self.blob
            .update_key(ABORT_KEY, |old| {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) =
                    old.map(str::to_string).filter(|s| !s.trim().is_empty());
                Ok(String::new())
            })
            .await
            .ok()?;
        seen.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    async fn post_abort(&self, by: &str) -> Result<(), String> {
        self.blob
            .update_key(ABORT_KEY, |_| Ok(by.to_string()))
            .await
            .map_err(|e| format!("cannot post the abort to {}: {e}", self.describe()))
    }

    async fn lost(&self) -> Result<(), String> {
        let Some(o) = &self.owner else {
            return Ok(());
        };
        match o.check().await {
            // Still ours.
            Ok(None) => Ok(()),
            // Taken over, released by someone else, or expired: another orchestrator may
            // drive the fleet now (or may start to at any moment). Stop, whatever it is.
            Ok(Some(Stop::Lost { detail, .. })) => Err(detail),
            Ok(Some(Stop::Braked(b))) => Err(format!(
                "the fleet's Lease was braked by {}; this orchestrator stops",
                b.by
            )),
            // Unreadable for a moment (an API blip): the renewal goes on; the next look decides.
            Err(e) => {
                tracing::warn!(error = %e, "the fleet's Lease cannot be read; looking again");
                Ok(())
            }
        }
    }

    fn describe(&self) -> String {
        self.blob.describe()
    }
}
