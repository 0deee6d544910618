//! Run state in a local JSON file, for runs outside a cluster.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use cutover_core::run::{Command, RunState};
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

    /// Where commands are posted: a folder beside the state file, one file per command
    /// (created under a temporary name and renamed: two operators posting at once never
    /// overwrite each other, and the run never reads half a command).
    pub fn commands_dir(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".commands");
        self.path.with_file_name(name)
    }

    fn access(&self, action: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Access {
            action,
            place: self.commands_dir().display().to_string(),
            detail: e.to_string(),
        }
    }
}

/// A command id as a file name: letters, digits, `-`, `_`, `.` kept, anything else `_`.
fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
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

    async fn post_command(&self, command: &Command) -> Result<(), StoreError> {
        use std::io::Write;
        let dir = self.commands_dir();
        std::fs::create_dir_all(&dir).map_err(|e| self.access("cannot create", e))?;
        let body =
            serde_json::to_vec_pretty(command).map_err(|e| self.access("cannot encode for", e))?;
        let name = safe_name(&command.id);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.access("cannot write to", e))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(|e| self.access("cannot write to", e))?;
        std::fs::rename(&tmp, dir.join(format!("{name}.json")))
            .map_err(|e| self.access("cannot write to", e))
    }

    async fn commands(&self) -> Result<Vec<Command>, StoreError> {
        let dir = self.commands_dir();
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.access("cannot read", e)),
            Ok(d) => d,
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| self.access("cannot read", e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| self.access("cannot read", e))?;
            let c: Command = serde_json::from_slice(&bytes).map_err(|e| StoreError::NotAState {
                place: path.display().to_string(),
                detail: format!("not a command: {e}"),
            })?;
            out.push(c);
        }
        out.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn forget_commands(&self, ids: &[String]) -> Result<(), StoreError> {
        let dir = self.commands_dir();
        for id in ids {
            match std::fs::remove_file(dir.join(format!("{}.json", safe_name(id)))) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(self.access("cannot remove a command from", e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
