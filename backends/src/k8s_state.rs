//! Run state and the run lock for Jobs: the state as one key of a ConfigMap, the lock as a
//! `coordination.k8s.io/v1` Lease, both in the controller's namespace. Both are written with
//! their resourceVersion, so two controllers can never both believe they hold a service.

use std::time::{Duration, SystemTime};

use kube::core::Request;
use kube::core::params::{GetParams, PostParams};
use serde_json::{Value, json};

use crate::BackendError;
use crate::k8s::ObjectRef;

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

/// A Lease held by one controller per service.
pub struct Lease {
    client: kube::Client,
    obj: ObjectRef,
    holder: String,
    ttl: Duration,
}

fn micro_time(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

fn parse_time(v: &Value) -> Option<SystemTime> {
    v.as_str()
        .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
}

impl Lease {
    /// The Lease `namespace/name`, held as `holder` for `ttl` between renewals.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Lease {
        Lease {
            client,
            obj: core_ref(
                "Lease",
                "leases",
                "coordination.k8s.io",
                "v1",
                namespace,
                name,
            ),
            holder: holder.into(),
            ttl,
        }
    }

    /// Takes the Lease, or returns who holds it and when they last renewed it
    /// (`Some((holder, renewTime))`), and why. An expired Lease (not renewed within its
    /// duration) is taken over.
    pub async fn acquire(&self) -> Result<(), (Option<(String, String)>, String)> {
        let now = SystemTime::now();
        let spec = json!({"holderIdentity": self.holder, "leaseDurationSeconds": self.ttl.as_secs(),
                          "acquireTime": micro_time(now), "renewTime": micro_time(now)});
        let current = get(&self.client, &self.obj)
            .await
            .map_err(|e| (None, e.to_string()))?;
        let (lease, create) = match current {
            None => (
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": self.obj.name, "namespace": self.obj.namespace}, "spec": spec}),
                true,
            ),
            Some(mut l) => {
                let holder = l["spec"]["holderIdentity"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let renewed = parse_time(&l["spec"]["renewTime"]).unwrap_or(SystemTime::UNIX_EPOCH);
                let dur =
                    Duration::from_secs(l["spec"]["leaseDurationSeconds"].as_u64().unwrap_or(0));
                let live = !holder.is_empty() && holder != self.holder && renewed + dur > now;
                if live {
                    let renew = l["spec"]["renewTime"].as_str().unwrap_or("").to_string();
                    return Err((
                        Some((holder.clone(), renew)),
                        format!(
                            "another cutover run drives this service: {holder} holds {} (renewed {}); wait for it to end (the Lease expires {}s after its last renewal)",
                            self.obj.describe(),
                            micro_time(renewed),
                            dur.as_secs()
                        ),
                    ));
                }
                l["spec"] = spec;
                (l, false)
            }
        };
        write(&self.client, &self.obj, &lease, create)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                BackendError::Conflict(_) => (
                    None,
                    format!(
                        "another cutover run took {} at the same moment",
                        self.obj.describe()
                    ),
                ),
                other => (None, other.to_string()),
            })
    }

    /// Renews the Lease (call every `ttl / 3`).
    pub async fn renew(&self) -> Result<(), BackendError> {
        let Some(mut l) = get(&self.client, &self.obj).await? else {
            return Err(BackendError::NotFound {
                what: self.obj.describe(),
                hint: "the Lease was deleted".into(),
            });
        };
        if l["spec"]["holderIdentity"].as_str() != Some(self.holder.as_str()) {
            return Err(BackendError::Conflict(format!(
                "{} is now held by {}",
                self.obj.describe(),
                l["spec"]["holderIdentity"]
            )));
        }
        l["spec"]["renewTime"] = Value::String(micro_time(SystemTime::now()));
        write(&self.client, &self.obj, &l, false).await.map(|_| ())
    }

    /// Gives the Lease up (best effort).
    pub async fn release(&self) {
        if let Ok(Some(mut l)) = get(&self.client, &self.obj).await
            && l["spec"]["holderIdentity"].as_str() == Some(self.holder.as_str())
        {
            l["spec"]["holderIdentity"] = Value::Null;
            let _ = write(&self.client, &self.obj, &l, false).await;
        }
    }
}
