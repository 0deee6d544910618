//! The `file` backend: the split lives in a small JSON file, `{"primary": 10, "dr": 90}`.
//!
//! For demos, dry runs, the simulator and tests; also a way to drive a load balancer
//! that watches a file. Writes are atomic (write a temporary file, then rename).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Applied, BackendError, TrafficBackend, Weights};

/// Policy settings of the `file` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileBackendConfig {
    /// Path of the JSON weights file, e.g. `/var/run/cutover/checkout-weights.json`.
    pub path: PathBuf,
    /// Create the file with all traffic on DR when it does not exist (demos); default false,
    /// so that a typo in the path is an error rather than a fresh file.
    #[serde(default)]
    pub create: bool,
}

/// Weights kept in a local JSON file.
#[derive(Debug, Clone)]
pub struct FileBackend {
    path: PathBuf,
    create: bool,
}

impl FileBackend {
    /// A backend on the file named by `config`.
    pub fn new(config: &FileBackendConfig) -> FileBackend {
        FileBackend {
            path: config.path.clone(),
            create: config.create,
        }
    }

    /// The weights file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file synchronously; used by simulators that follow the split.
    pub fn read_sync(path: &Path) -> Result<Weights, BackendError> {
        let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
        parse(path, &text)
    }

    fn write_sync(path: &Path, weights: Weights) -> Result<(), BackendError> {
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_string(&weights).expect("weights serialize") + "\n";
        std::fs::write(&tmp, body).map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> BackendError {
    if source.kind() == std::io::ErrorKind::NotFound {
        return BackendError::NotFound {
            what: format!("weights file {}", path.display()),
            hint: format!(
                "create it with {{\"primary\": 0, \"dr\": 100}} or set backend.file.create: true \
                 ({source})"
            ),
        };
    }
    BackendError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn parse(path: &Path, text: &str) -> Result<Weights, BackendError> {
    let weights: Weights = serde_json::from_str(text).map_err(|e| {
        BackendError::Invalid(format!(
            "{}: {e}; expected {{\"primary\": <0-100>, \"dr\": <0-100>}}",
            path.display()
        ))
    })?;
    weights
        .validate()
        .map_err(|e| BackendError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(weights)
}

#[async_trait]
impl TrafficBackend for FileBackend {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn get_weights(&self) -> Result<Weights, BackendError> {
        let path = self.path.clone();
        let create = self.create;
        tokio::task::spawn_blocking(move || match FileBackend::read_sync(&path) {
            Err(BackendError::NotFound { .. }) if create => {
                FileBackend::write_sync(&path, Weights::ALL_DR)?;
                Ok(Weights::ALL_DR)
            }
            other => other,
        })
        .await
        .map_err(|e| BackendError::Transient(format!("file task failed: {e}")))?
    }

    async fn set_weights(&self, weights: Weights) -> Result<Applied, BackendError> {
        weights.validate()?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || FileBackend::write_sync(&path, weights))
            .await
            .map_err(|e| BackendError::Transient(format!("file task failed: {e}")))??;
        Ok(Applied {
            weights,
            change: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cutover-file-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("weights.json")
    }

    #[tokio::test]
    async fn round_trip_and_atomic_write() {
        let path = temp("rt");
        let _ = std::fs::remove_file(&path);
        let b = FileBackend::new(&FileBackendConfig {
            path: path.clone(),
            create: true,
        });
        assert_eq!(b.get_weights().await.unwrap(), Weights::ALL_DR);
        b.set_weights(Weights::primary(25).unwrap()).await.unwrap();
        assert_eq!(
            b.get_weights().await.unwrap(),
            Weights {
                primary: 25,
                dr: 75
            }
        );
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[tokio::test]
    async fn missing_file_is_not_found_without_create() {
        let path = temp("missing").with_file_name("absent.json");
        let b = FileBackend::new(&FileBackendConfig {
            path,
            create: false,
        });
        let err = b.get_weights().await.unwrap_err();
        assert!(matches!(err, BackendError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("absent.json"));
    }

    #[tokio::test]
    async fn bad_content_is_invalid() {
        let path = temp("bad");
        std::fs::write(&path, r#"{"primary": 60, "dr": 60}"#).unwrap();
        let b = FileBackend::new(&FileBackendConfig {
            path,
            create: false,
        });
        let err = b.get_weights().await.unwrap_err();
        assert!(err.to_string().contains("do not sum to 100"), "{err}");
    }
}
