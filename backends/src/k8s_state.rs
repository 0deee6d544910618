//! Run state for Jobs: the state as one key of a ConfigMap in the controller's namespace,
//! written with its resourceVersion. (The run's lock is the routed object's own: see
//! [`crate::k8s_lock`].) The raw get/create/replace helpers here serve both.

use kube::core::Request;
use kube::core::params::{GetParams, PostParams};
use serde_json::{Value, json};

use crate::k8s::ObjectRef;
use cutover_core::BackendError;

const KEY: &str = "state.json";

pub(crate) fn core_ref(
    kind: &str,
    plural: &str,
    group: &str,
    version: &str,
    namespace: &str,
    name: &str,
) -> ObjectRef {
    ObjectRef {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn collection(o: &ObjectRef) -> String {
    if o.group.is_empty() {
        format!("/api/{}/namespaces/{}/{}", o.version, o.namespace, o.plural)
    } else {
        format!(
            "/apis/{}/{}/namespaces/{}/{}",
            o.group, o.version, o.namespace, o.plural
        )
    }
}

pub(crate) async fn get(
    client: &kube::Client,
    o: &ObjectRef,
) -> Result<Option<Value>, BackendError> {
    let req = Request::new(collection(o))
        .get(&o.name, &GetParams::default())
        .map_err(|e| BackendError::Invalid(e.to_string()))?;
    match client.request::<Value>(req).await {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s))
            if s.code == 404 && !s.message.contains("could not find the requested resource") =>
        {
            Ok(None)
        }
        Err(e) => Err(o.error("get", e)),
    }
}

pub(crate) async fn write(
    client: &kube::Client,
    o: &ObjectRef,
    obj: &Value,
    create: bool,
) -> Result<Value, BackendError> {
    let body = serde_json::to_vec(obj).expect("JSON");
    let pp = PostParams {
        field_manager: Some("cutover".into()),
        ..Default::default()
    };
    let r = Request::new(collection(o));
    let req = if create {
        r.create(&pp, body)
    } else {
        r.replace(&o.name, &pp, body)
    }
    .map_err(|e| BackendError::Invalid(e.to_string()))?;
    client
        .request::<Value>(req)
        .await
        .map_err(|e| o.error(if create { "create" } else { "update" }, e))
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
