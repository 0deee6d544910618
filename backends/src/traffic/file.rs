//! The `file` backend: the split lives in a small JSON file, `{"primary": 10, "dr": 90}`.
//!
//! For demos, dry runs, the simulator and tests; also a way to drive a load balancer
//! that watches a file. Writes are atomic (write a temporary file, then rename).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use cutover_core::policy::backend::FileBackendConfig;

use cutover_core::lock::ObjectLock;

use crate::lock::FileLock;
use cutover_core::{Applied, BackendError, TrafficBackend, Weights};

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
        // A weights file someone made read-only is a statement: never replace it (a rename
        // would, whatever its mode). Otherwise the new file keeps the old one's mode.
        let mode = match std::fs::metadata(path) {
            Ok(m) if m.permissions().readonly() => {
                return Err(BackendError::Forbidden(format!(
                    "weights file {} is read-only; make it writable (chmod u+w) to let cutover change it",
                    path.display()
                )));
            }
            Ok(m) => Some(m.permissions()),
            Err(_) => None,
        };
        // A temporary name of this process's own: a stale temporary file left by another
        // user's failed write can neither block nor be mistaken for this write.
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let body = serde_json::to_string(&weights).expect("weights serialize") + "\n";
        std::fs::write(&tmp, body).map_err(|e| io_error(&tmp, e))?;
        if let Some(p) = mode {
            std::fs::set_permissions(&tmp, p).map_err(|e| io_error(&tmp, e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error(path, e)
        })
    }

    /// The lock record of this weights file: `<canonical path>.cutover-lock`, beside it, so
    /// that every run on the same file finds it whatever its working directory or state file.
    pub fn lock_path(&self) -> PathBuf {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "weights".into());
        dir.join(format!("{name}.cutover-lock"))
    }
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> BackendError {
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

    async fn set_weights(&self, weights: Weights, _note: &str) -> Result<Applied, BackendError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || FileBackend::write_sync(&path, weights))
            .await
            .map_err(|e| BackendError::Transient(format!("file task failed: {e}")))??;
        Ok(Applied {
            weights,
            change: None,
        })
    }

    fn object_lock(&self) -> Option<std::sync::Arc<dyn ObjectLock>> {
        Some(std::sync::Arc::new(FileLock::new(self.lock_path())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::lock::LockRecord;

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
        b.set_weights(Weights::from_primary(25).unwrap(), "")
            .await
            .unwrap();
        assert_eq!(
            b.get_weights().await.unwrap(),
            Weights::new(25, 75).unwrap()
        );
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[tokio::test]
    async fn a_stale_temporary_file_of_another_writer_does_not_block_a_write() {
        let path = temp("stale-tmp");
        std::fs::write(&path, r#"{"primary": 10, "dr": 90}"#).unwrap();
        // Left behind by an earlier failed write (e.g. another user's): a directory here
        // cannot be overwritten by anyone.
        std::fs::create_dir_all(path.with_extension("json.tmp")).unwrap();
        let b = FileBackend::new(&FileBackendConfig {
            path: path.clone(),
            create: false,
        });
        b.set_weights(Weights::ALL_DR, "").await.unwrap();
        assert_eq!(b.get_weights().await.unwrap(), Weights::ALL_DR);
    }

    #[tokio::test]
    async fn a_read_only_weights_file_is_refused_and_a_writable_one_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp("mode");
        std::fs::write(&path, r#"{"primary": 0, "dr": 100}"#).unwrap();
        let b = FileBackend::new(&FileBackendConfig {
            path: path.clone(),
            create: false,
        });
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        b.set_weights(Weights::from_primary(10).unwrap(), "")
            .await
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the mode is kept");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let e = b.set_weights(Weights::ALL_DR, "").await.unwrap_err();
        assert!(matches!(e, BackendError::Forbidden(_)), "{e}");
        assert!(e.to_string().contains("read-only"), "{e}");
        assert_eq!(
            b.get_weights().await.unwrap(),
            Weights::from_primary(10).unwrap()
        );
    }

    #[tokio::test]
    async fn lock_records_swap_only_from_the_version_read() {
        let path = temp("lock");
        let b = FileBackend::new(&FileBackendConfig {
            path: path.clone(),
            create: true,
        });
        // Two spellings of one file share one lock record.
        let other = FileBackend::new(&FileBackendConfig {
            path: path.parent().unwrap().join(".").join("weights.json"),
            create: true,
        });
        assert_eq!(b.lock_path(), other.lock_path());
        let lock = b.object_lock().unwrap();
        let _ = std::fs::remove_file(b.lock_path());
        assert!(lock.read().await.unwrap().is_none());
        let rec = LockRecord::default();
        lock.swap(None, &rec).await.unwrap();
        let read = lock.read().await.unwrap().unwrap();
        assert_eq!(read.record, rec);
        // A second swap from "nothing" loses: someone swapped first.
        let e = lock.swap(None, &rec).await.unwrap_err();
        assert!(matches!(e, BackendError::Conflict(_)), "{e}");
        lock.swap(Some(&read.version), &rec).await.unwrap();
        std::fs::write(b.lock_path(), "garbage").unwrap();
        let e = lock.read().await.unwrap_err();
        assert!(e.to_string().contains("not a cutover lock"), "{e}");
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
