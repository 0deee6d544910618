//! Raw JSON access to namespaced Kubernetes objects of any kind (Jobs, Pods, ConfigMaps),
//! for the fleet's Kubernetes executor: get, create (an object that already exists is
//! said so, never created twice) and list by label selector. Every field of an object
//! survives as it was sent or read.

use kube::core::Request;
use kube::core::params::{ListParams, PostParams};
use serde_json::Value;

use cutover_core::BackendError;

pub use crate::traffic::k8s::ObjectRef;

/// The object `kind namespace/name` of `group/version` (`""` for the core group), whose
/// resource is `plural`. For a collection (list, create), the name is not used.
pub fn object(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> ObjectRef {
    crate::kube_api::core_ref(kind, plural, group, version, namespace, name)
}

/// What a create did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The object was created; as stored (with its uid and resourceVersion).
    New(Value),
    /// An object of that name already exists (409 `AlreadyExists`): nothing was created.
    Exists,
}

/// A connection to a cluster's API server, for raw object access; the kube client stays
/// inside this crate.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
}

impl Cluster {
    /// Connects as `cutover run` does: `--kubeconfig`/`--context`, else in-cluster, else
    /// `~/.kube/config`.
    pub async fn connect(options: &crate::ConnectOptions) -> Result<Cluster, BackendError> {
        Ok(Cluster {
            client: crate::traffic::k8s::client(options).await?,
        })
    }

    /// The object, if it exists.
    pub async fn get(&self, o: &ObjectRef) -> Result<Option<Value>, BackendError> {
        get(&self.client, o).await
    }

    /// Creates `obj` in the collection of `o`, or says that it already exists.
    pub async fn create(&self, o: &ObjectRef, obj: &Value) -> Result<Created, BackendError> {
        create(&self.client, o, obj).await
    }

    /// The objects of `o`'s kind in its namespace whose labels match `selector`.
    pub async fn list(&self, o: &ObjectRef, selector: &str) -> Result<Vec<Value>, BackendError> {
        list(&self.client, o, selector).await
    }

    /// The ConfigMap `namespace/name` as a blob of keys.
    pub fn configmap(&self, namespace: &str, name: &str) -> crate::state::ConfigMapBlob {
        crate::state::ConfigMapBlob::new(self.client.clone(), namespace, name)
    }

    /// A run's state store in the ConfigMap `namespace/name` (its commands mailbox too).
    pub fn run_store(&self, namespace: &str, name: &str) -> crate::state::ConfigMapStore {
        crate::state::ConfigMapStore::new(self.configmap(namespace, name))
    }

    /// The lock kept in Lease `namespace/name` for `identity`.
    pub fn lease(
        &self,
        namespace: &str,
        name: &str,
        identity: &str,
    ) -> crate::lock::lease::LeaseLock {
        crate::lock::lease::LeaseLock::new(self.client.clone(), namespace, name, identity)
    }
}

/// The object, if it exists.
pub async fn get(client: &kube::Client, o: &ObjectRef) -> Result<Option<Value>, BackendError> {
    crate::kube_api::get(client, o).await
}

/// Creates `obj` in the collection of `o`, or says that it already exists.
pub async fn create(
    client: &kube::Client,
    o: &ObjectRef,
    obj: &Value,
) -> Result<Created, BackendError> {
    let body = serde_json::to_vec(obj).map_err(|e| BackendError::Invalid(e.to_string()))?;
    let pp = PostParams {
        field_manager: Some("cutover".into()),
        ..Default::default()
    };
    let req = Request::new(crate::kube_api::collection(o))
        .create(&pp, body)
        .map_err(|e| BackendError::Invalid(e.to_string()))?;
    match client.request::<Value>(req).await {
        Ok(v) => Ok(Created::New(v)),
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
            Ok(Created::Exists)
        }
        Err(e) => Err(o.error("create", e)),
    }
}

/// The objects of `o`'s kind in its namespace whose labels match `selector`
/// (e.g. `job-name=cutover-site-checkout-1a2b3c4d`).
pub async fn list(
    client: &kube::Client,
    o: &ObjectRef,
    selector: &str,
) -> Result<Vec<Value>, BackendError> {
    let req = Request::new(crate::kube_api::collection(o))
        .list(&ListParams::default().labels(selector))
        .map_err(|e| BackendError::Invalid(e.to_string()))?;
    let list = client
        .request::<Value>(req)
        .await
        .map_err(|e| o.error("list", e))?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}
