//! Run state in a ConfigMap, for Jobs: a Job's pods come and go, the ConfigMap stays.
//! The state is the `state.json` key, written with the resourceVersion read.

use async_trait::async_trait;
use cutover_core::BackendError;
use cutover_core::run::{Command, RunState};
use cutover_core::store::{StateStore, StoreError};
use serde_json::{Value, json};

use crate::kube_api::{core_ref, get, write};
use crate::traffic::k8s::ObjectRef;

const KEY: &str = "state.json";
/// Operator commands: a JSON array, beside the state (the run rewrites only its key).
const COMMANDS: &str = "commands.json";

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
    async fn save(&self, state: &RunState) -> Result<(), StoreError> {
        let text = serde_json::to_string_pretty(state).map_err(|e| StoreError::Access {
            action: "cannot encode the run state for",
            place: self.blob.describe(),
            detail: e.to_string(),
        })?;
        self.blob.save(&text).await.map_err(|e| StoreError::Access {
            action: "cannot write the run state to",
            place: self.blob.describe(),
            detail: e.to_string(),
        })
    }

    async fn load(&self) -> Result<Option<RunState>, StoreError> {
        let text = self.blob.load().await.map_err(|e| StoreError::Access {
            action: "cannot read the run state from",
            place: self.blob.describe(),
            detail: e.to_string(),
        })?;
        match text {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| StoreError::NotAState {
                    place: self.blob.describe(),
                    detail: e.to_string(),
                }),
        }
    }

    fn describe(&self) -> String {
        self.blob.describe()
    }

    async fn post_command(&self, command: &Command) -> Result<(), StoreError> {
        let command = command.clone();
        self.update_commands("cannot post a command to", move |list| {
            list.push(command.clone())
        })
        .await
    }

    async fn commands(&self) -> Result<Vec<Command>, StoreError> {
        let text = self
            .blob
            .load_key(COMMANDS)
            .await
            .map_err(|e| StoreError::Access {
                action: "cannot read the commands from",
                place: self.blob.describe(),
                detail: e.to_string(),
            })?;
        decode_commands(text.as_deref()).map_err(|detail| StoreError::NotAState {
            place: format!("{} key {COMMANDS}", self.blob.describe()),
            detail,
        })
    }

    async fn forget_commands(&self, ids: &[String]) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.update_commands("cannot forget commands in", move |list| {
            list.retain(|c| !ids.contains(&c.id))
        })
        .await
    }
}

impl ConfigMapStore {
    /// Changes the command list with the resourceVersion read (a concurrent poster makes
    /// the write conflict and it is redone on the fresh list: no command is lost).
    async fn update_commands(
        &self,
        action: &'static str,
        change: impl Fn(&mut Vec<Command>) + Send + Sync,
    ) -> Result<(), StoreError> {
        let fail = |detail: String| StoreError::Access {
            action,
            place: self.blob.describe(),
            detail,
        };
        self.blob
            .update_key(COMMANDS, |old| {
                let mut list = decode_commands(old)?;
                change(&mut list);
                serde_json::to_string_pretty(&list).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| fail(e.to_string()))
    }
}

fn decode_commands(text: Option<&str>) -> Result<Vec<Command>, String> {
    match text {
        None => Ok(Vec::new()),
        Some(t) if t.trim().is_empty() => Ok(Vec::new()),
        Some(t) => serde_json::from_str(t).map_err(|e| format!("not a list of commands: {e}")),
    }
}

/// The run state as the `state.json` key of a ConfigMap.
pub struct ConfigMapBlob {
    client: kube::Client,
    obj: ObjectRef,
}

impl ConfigMapBlob {
    /// The ConfigMap `namespace/name`.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> ConfigMapBlob {
        ConfigMapBlob {
            client,
            obj: core_ref("ConfigMap", "configmaps", "", "v1", namespace, name),
        }
    }

    /// `ConfigMap ns/name`.
    pub fn describe(&self) -> String {
        self.obj.describe()
    }

    /// The stored state, if the ConfigMap exists and holds one.
    pub async fn load(&self) -> Result<Option<String>, BackendError> {
        self.load_key(KEY).await
    }

    /// One key of the ConfigMap, if it exists and holds it.
    pub async fn load_key(&self, key: &str) -> Result<Option<String>, BackendError> {
        Ok(get(&self.client, &self.obj)
            .await?
            .and_then(|cm| cm["data"][key].as_str().map(str::to_string)))
    }

    /// Stores the state, creating the ConfigMap if needed; a conflicting writer is retried
    /// a few times on the fresh resourceVersion (the Lease already makes us the only writer).
    pub async fn save(&self, state: &str) -> Result<(), BackendError> {
        self.update_key(KEY, |_| Ok(state.to_string())).await
    }

    /// Sets one key to what `change` makes of its current value, with the resourceVersion
    /// read, creating the ConfigMap if needed; the other keys are kept. A conflict is
    /// retried on the fresh object, a few times.
    pub async fn update_key(
        &self,
        key: &str,
        change: impl Fn(Option<&str>) -> Result<String, String>,
    ) -> Result<(), BackendError> {
        for _ in 0..5 {
            let current = get(&self.client, &self.obj).await?;
            let (mut cm, create) = match current {
                Some(cm) => (cm, false),
                None => (
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": self.obj.name, "namespace": self.obj.namespace,
                                        "labels": {"app.kubernetes.io/managed-by": "cutover"}}}),
                    true,
                ),
            };
            let new = change(cm["data"][key].as_str()).map_err(|e| {
                BackendError::Invalid(format!("{} key {key}: {e}", self.describe()))
            })?;
            cm["data"][key] = Value::String(new);
            match write(&self.client, &self.obj, &cm, create).await {
                Ok(_) => return Ok(()),
                Err(BackendError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(BackendError::Conflict(format!(
            "{} kept changing under us",
            self.describe()
        )))
    }
}
