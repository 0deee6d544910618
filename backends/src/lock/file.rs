//! The lock of the `file` backend: a record file beside the weights file, swapped under an
//! exclusive `flock`.

use std::path::PathBuf;

use async_trait::async_trait;
use cutover_core::BackendError;
use cutover_core::lock::{LockRecord, ObjectLock, Versioned};

use crate::traffic::file::io_error;

/// The lock record of a weights file, in a file beside it. A compare-and-swap holds an
/// exclusive `flock` on the record file while it reads, compares and rewrites it, so two
/// processes on this host can never both swap from the same version.
pub struct FileLock {
    path: PathBuf,
}

impl FileLock {
    /// The lock record at `path`.
    pub fn new(path: PathBuf) -> FileLock {
        FileLock { path }
    }

    fn open(&self) -> Result<std::fs::File, BackendError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|e| io_error(&self.path, e))
    }

    fn read_sync(&self) -> Result<Option<Versioned>, BackendError> {
        use std::io::Read;
        let mut f = match std::fs::File::open(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other.map_err(|e| io_error(&self.path, e))?,
        };
        f.lock_shared().map_err(|e| io_error(&self.path, e))?;
        let mut text = String::new();
        f.read_to_string(&mut text)
            .map_err(|e| io_error(&self.path, e))?;
        self.decode(text)
    }

    fn decode(&self, text: String) -> Result<Option<Versioned>, BackendError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let record: LockRecord = serde_json::from_str(&text).map_err(|e| {
            BackendError::Invalid(format!(
                "the lock record {} is not a cutover lock ({e}); if no run drives this object, delete the file",
                self.path.display()
            ))
        })?;
        Ok(Some(Versioned {
            record,
            version: text,
        }))
    }

    fn swap_sync(&self, expected: Option<&str>, new: &LockRecord) -> Result<(), BackendError> {
        use std::io::{Read, Seek, Write};
        let mut f = self.open()?;
        f.lock().map_err(|e| io_error(&self.path, e))?;
        let mut text = String::new();
        f.read_to_string(&mut text)
            .map_err(|e| io_error(&self.path, e))?;
        let current = if text.trim().is_empty() {
            None
        } else {
            Some(text.as_str())
        };
        if current != expected {
            return Err(BackendError::Conflict(format!(
                "the lock record {} changed since it was read",
                self.path.display()
            )));
        }
        let body = serde_json::to_string(new).expect("lock record serializes") + "\n";
        f.set_len(0).map_err(|e| io_error(&self.path, e))?;
        f.rewind().map_err(|e| io_error(&self.path, e))?;
        f.write_all(body.as_bytes())
            .map_err(|e| io_error(&self.path, e))?;
        f.sync_all().map_err(|e| io_error(&self.path, e))
    }
}

#[async_trait]
impl ObjectLock for FileLock {
    fn describe(&self) -> String {
        format!("lock file {}", self.path.display())
    }

    async fn read(&self) -> Result<Option<Versioned>, BackendError> {
        let me = FileLock::new(self.path.clone());
        tokio::task::spawn_blocking(move || me.read_sync())
            .await
            .map_err(|e| BackendError::Transient(format!("file task failed: {e}")))?
    }

    async fn swap(&self, expected: Option<&str>, new: &LockRecord) -> Result<(), BackendError> {
        let me = FileLock::new(self.path.clone());
        let (expected, new) = (expected.map(str::to_string), new.clone());
        tokio::task::spawn_blocking(move || me.swap_sync(expected.as_deref(), &new))
            .await
            .map_err(|e| BackendError::Transient(format!("file task failed: {e}")))?
    }
}
