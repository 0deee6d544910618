//! The run-state stores, implementations of [`cutover_core::store::StateStore`]: a JSON
//! file for local runs and a ConfigMap for Jobs.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use cutover_core::run::RunState;
use cutover_core::store::StateStore;

use crate::k8s_state::ConfigMapBlob;

/// Run state in a ConfigMap (a Job's pods come and go; the ConfigMap stays).
pub struct ConfigMapStore {
    blob: ConfigMapBlob,
}

impl ConfigMapStore {
    /// A store in the given ConfigMap.
    pub fn new(blob: ConfigMapBlob) -> ConfigMapStore {
        ConfigMapStore { blob }
    }
}

#[async_trait]
impl StateStore for ConfigMapStore {
    async fn save(&self, state: &RunState) -> Result<(), String> {
        let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
        self.blob.save(&text).await.map_err(|e| {
            format!(
                "cannot write the run state to {}: {e}",
                self.blob.describe()
            )
        })
    }

    async fn load(&self) -> Result<Option<RunState>, String> {
        match self.blob.load().await.map_err(|e| e.to_string())? {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| format!("{} does not hold a run state: {e}", self.blob.describe())),
        }
    }

    fn describe(&self) -> String {
        self.blob.describe()
    }
}

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
    async fn save(&self, state: &RunState) -> Result<(), String> {
        use std::io::Write;
        let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", self.path.display());
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the folder of", e))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| fail("cannot write", e))?;
        f.write_all(&body).map_err(|e| fail("cannot write", e))?;
        f.sync_all().map_err(|e| fail("cannot sync", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| fail("cannot replace", e))
    }

    async fn load(&self) -> Result<Option<RunState>, String> {
        match std::fs::read(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| format!("{} is not a run state: {e}", self.path.display())),
        }
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}
