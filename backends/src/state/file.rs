//! Run state in a local JSON file, for runs outside a cluster.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use cutover_core::run::RunState;
use cutover_core::store::{StateStore, StoreError};

/// Run state in a local JSON file, written atomically (temporary file, fsync, rename).
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl StateStore for FileStore {
    async fn save(&self, state: &RunState) -> Result<(), StoreError> {
        use std::io::Write;
        let fail = |action: &'static str, e: std::io::Error| StoreError::Access {
            action,
            place: self.path.display().to_string(),
            detail: e.to_string(),
        };
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the folder of", e))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Access {
            action: "cannot encode the run state for",
            place: self.path.display().to_string(),
            detail: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| fail("cannot write", e))?;
        f.write_all(&body).map_err(|e| fail("cannot write", e))?;
        f.sync_all().map_err(|e| fail("cannot sync", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| fail("cannot replace", e))
    }

    async fn load(&self) -> Result<Option<RunState>, StoreError> {
        match std::fs::read(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Access {
                action: "cannot read",
                place: self.path.display().to_string(),
                detail: e.to_string(),
            }),
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::NotAState {
                    place: self.path.display().to_string(),
                    detail: e.to_string(),
                }),
        }
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}
