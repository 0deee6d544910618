//! Raw Kubernetes API calls on JSON objects: get, and create or replace with the
//! resourceVersion read (409 on a concurrent change). Shared by the Lease lock and the
//! ConfigMap run-state store.

use kube::core::Request;
use kube::core::params::{GetParams, PostParams};
use serde_json::Value;

use crate::traffic::k8s::ObjectRef;
use cutover_core::BackendError;

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

pub(crate) fn collection(o: &ObjectRef) -> String {
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
