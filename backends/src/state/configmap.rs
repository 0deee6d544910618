//! Run state in a ConfigMap, for Jobs: a Job's pods come and go, the ConfigMap stays.
//! The state is the `state.json` key, written with the resourceVersion read.

use async_trait::async_trait;
use cutover_core::BackendError;
use cutover_core::run::RunState;
use cutover_core::store::{StateStore, StoreError};
use serde_json::{Value, json};

use crate::kube_api::{core_ref, get, write};
use crate::traffic::k8s::ObjectRef;

const KEY: &str = "state.json";

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
        Ok(get(&self.client, &self.obj)
            .await?
            .and_then(|cm| cm["data"][KEY].as_str().map(str::to_string)))
    }

    /// Stores the state, creating the ConfigMap if needed; a conflicting writer is retried
    /// a few times on the fresh resourceVersion (the Lease already makes us the only writer).
    pub async fn save(&self, state: &str) -> Result<(), BackendError> {
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
            cm["data"][KEY] = Value::String(state.to_string());
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
