//! What the Kubernetes backends share: the client (in-cluster service account, else
//! kubeconfig with an optional context; rustls), raw-JSON requests so that every field of a
//! routed object survives a read-modify-write untouched, error mapping that says which verb
//! on which object is missing and what RBAC rule fixes it, and Events on the routed object.

use std::time::Duration;

use kube::core::Request;
use kube::core::params::{GetParams, PostParams};
use serde_json::Value;

use cutover_core::BackendError;

use crate::ConnectOptions;

/// A Kubernetes client from the options: `--kubeconfig`/`--context`, else in-cluster, else
/// `~/.kube/config`.
pub async fn client(options: &ConnectOptions) -> Result<kube::Client, BackendError> {
    let config = match &options.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                BackendError::Invalid(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?;
            let opts = kube::config::KubeConfigOptions {
                context: options.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| BackendError::Invalid(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => match &options.context {
            Some(ctx) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions {
                context: Some(ctx.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| BackendError::Invalid(format!("kubeconfig context {ctx}: {e}")))?,
            None => kube::Config::infer().await.map_err(|e| {
                BackendError::Invalid(format!(
                    "no Kubernetes configuration: not in a pod and no kubeconfig ({e}); pass --kubeconfig"
                ))
            })?,
        },
    };
    kube::Client::try_from(config)
        .map_err(|e| BackendError::Invalid(format!("cannot build a Kubernetes client: {e}")))
}

/// One namespaced object of one resource type, read and written as raw JSON.
#[derive(Clone)]
pub struct ObjectRef {
    /// API group, e.g. `networking.istio.io`.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural resource name, e.g. `virtualservices`.
    pub plural: String,
    /// Kind, e.g. `VirtualService`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    fn collection(&self) -> String {
        format!(
            "/apis/{}/{}/namespaces/{}/{}",
            self.group, self.version, self.namespace, self.plural
        )
    }

    /// `VirtualService production/checkout`.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// The RBAC rule that grants `verb` on this object.
    fn rbac(&self, verb: &str) -> String {
        format!(
            "add to the Role in namespace {}: {{apiGroups: [\"{}\"], resources: [\"{}\"], resourceNames: [\"{}\"], verbs: [\"{verb}\"]}}",
            self.namespace, self.group, self.plural, self.name
        )
    }

    /// Maps an API error to what the operator must do.
    pub fn error(&self, verb: &str, e: kube::Error) -> BackendError {
        match e {
            kube::Error::Api(s) if s.code == 404 => BackendError::NotFound {
                what: self.describe(),
                hint: format!(
                    "`{verb}` answered 404 ({}); check the policy's namespace and name, and that the {} CRD ({}/{}) is installed",
                    s.message, self.kind, self.group, self.version
                ),
            },
            kube::Error::Api(s) if s.code == 403 => BackendError::Forbidden(format!(
                "`{verb}` on {} was refused: {}; {}",
                self.describe(),
                s.message,
                self.rbac(verb)
            )),
            kube::Error::Api(s) if s.code == 409 => BackendError::Conflict(format!(
                "{} changed since it was read ({})",
                self.describe(),
                s.message
            )),
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
                BackendError::Invalid(format!(
                    "the API server refused the change to {}: {}",
                    self.describe(),
                    s.message
                ))
            }
            kube::Error::Api(s) => BackendError::Transient(format!(
                "`{verb}` on {}: HTTP {} {}",
                self.describe(),
                s.code,
                s.message
            )),
            other => BackendError::Transient(format!("`{verb}` on {}: {other}", self.describe())),
        }
    }

    /// GETs the object as raw JSON.
    pub async fn get(&self, client: &kube::Client) -> Result<Value, kube::Error> {
        let req = Request::new(self.collection())
            .get(&self.name, &GetParams::default())
            .map_err(kube::Error::BuildRequest)?;
        client.request::<Value>(req).await
    }

    /// PUTs the object back (it carries the resourceVersion it was read at: optimistic
    /// concurrency; a stale one is a 409).
    pub async fn replace(&self, client: &kube::Client, obj: &Value) -> Result<Value, kube::Error> {
        let body = serde_json::to_vec(obj).expect("JSON serializes");
        let pp = PostParams {
            field_manager: Some("cutover".into()),
            ..Default::default()
        };
        let req = Request::new(self.collection())
            .replace(&self.name, &pp, body)
            .map_err(kube::Error::BuildRequest)?;
        client.request::<Value>(req).await
    }

    /// Creates an `events.k8s.io/v1` Event about this object. Failures are logged only.
    pub async fn event(
        &self,
        client: &kube::Client,
        uid: Option<String>,
        reason: &str,
        note: &str,
        warning: bool,
    ) {
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        let ev = serde_json::json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": { "generateName": format!("{}.cutover.", self.name), "namespace": self.namespace },
            "eventTime": now,
            "reportingController": "cutover.dev/controller",
            "reportingInstance": crate::traffic::k8s::instance(),
            "action": reason,
            "reason": reason,
            "note": note.chars().take(1000).collect::<String>(),
            "type": if warning { "Warning" } else { "Normal" },
            "regarding": {
                "apiVersion": format!("{}/{}", self.group, self.version),
                "kind": self.kind, "namespace": self.namespace, "name": self.name, "uid": uid,
            },
        });
        let req = match Request::new(format!(
            "/apis/events.k8s.io/v1/namespaces/{}/events",
            self.namespace
        ))
        .create(
            &PostParams::default(),
            serde_json::to_vec(&ev).expect("JSON"),
        ) {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "cannot build an Event"),
        };
        if let Err(e) =
            tokio::time::timeout(Duration::from_secs(5), client.request::<Value>(req)).await
        {
            tracing::warn!(object = %self.describe(), error = %e, "cannot create an Event (needs create on events.events.k8s.io)");
        }
    }
}

/// This controller instance, for Events: the pod name in a pod.
pub fn instance() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "cutover".into())
}

/// Sets `metadata.annotations[key] = value` on a raw object.
pub fn annotate(obj: &mut Value, key: &str, value: &str) {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = serde_json::json!({});
    }
    obj["metadata"]["annotations"][key] = Value::String(value.to_string());
}

/// Whether an error is a 409 conflict.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Where the two weights are inside a routed object, as JSON pointers.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// Pointer to the primary's weight, e.g. `/spec/http/2/route/0/weight`.
    pub primary: String,
    /// Pointer to DR's weight.
    pub dr: String,
    /// The weight an absent `weight` field means (Istio: 0; Gateway API: 1).
    pub absent: u64,
}

/// Finds the two weights in an object, or says what is there instead.
pub type Locate = Box<dyn Fn(&Value) -> Result<Located, BackendError> + Send + Sync>;

/// A routed object whose two destination weights are the split: read, change the two
/// numbers and nothing else, write back with optimistic concurrency (409: re-read, retry).
pub struct RoutedObject {
    client: kube::Client,
    obj: tokio::sync::Mutex<ObjectRef>,
    versions: Vec<String>,
    locate: Locate,
    uid: std::sync::Mutex<Option<String>>,
    max_conflicts: u32,
    lock: std::sync::Arc<crate::lock::lease::LeaseLock>,
}

fn weight_at(obj: &Value, ptr: &str, absent: u64) -> Result<u64, BackendError> {
    match obj.pointer(ptr) {
        None | Some(Value::Null) => Ok(absent),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| BackendError::Invalid(format!("{ptr} is {v}, not a whole number"))),
    }
}

fn set_weight(obj: &mut Value, ptr: &str, w: u64) -> Result<(), BackendError> {
    let (parent, key) = ptr.rsplit_once('/').expect("pointers have a parent");
    let p = obj
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| BackendError::Invalid(format!("{parent} is not an object")))?;
    p.insert(key.to_string(), Value::from(w));
    Ok(())
}

impl RoutedObject {
    /// A backend on `obj` (tried at each of `versions` in turn), weights found by `locate`.
    /// `part` names the route or rule inside the object: the object's lock (a Lease in its
    /// namespace) is per object and part.
    pub fn new(
        client: kube::Client,
        obj: ObjectRef,
        part: &str,
        versions: Vec<String>,
        locate: Locate,
    ) -> RoutedObject {
        let (identity, lease) =
            crate::lock::lease::lease_for(&obj.kind, &obj.namespace, &obj.name, part);
        let lock =
            crate::lock::lease::LeaseLock::new(client.clone(), &obj.namespace, &lease, &identity);
        RoutedObject {
            lock: std::sync::Arc::new(lock),
            client,
            obj: tokio::sync::Mutex::new(obj),
            versions,
            locate,
            uid: std::sync::Mutex::new(None),
            max_conflicts: 8,
        }
    }

    async fn fetch(&self) -> Result<(ObjectRef, Value), BackendError> {
        let mut obj = self.obj.lock().await;
        let mut first_err = None;
        for v in &self.versions {
            let mut candidate = obj.clone();
            candidate.version = v.clone();
            match candidate.get(&self.client).await {
                Ok(value) => {
                    *obj = candidate.clone();
                    *self.uid.lock().unwrap_or_else(|p| p.into_inner()) =
                        value["metadata"]["uid"].as_str().map(str::to_string);
                    return Ok((candidate, value));
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    first_err.get_or_insert_with(|| candidate.error("get", kube::Error::Api(s)));
                }
                Err(e) => return Err(candidate.error("get", e)),
            }
        }
        Err(first_err.unwrap_or_else(|| BackendError::Invalid("no API version to try".into())))
    }

    fn weights(&self, value: &Value) -> Result<(Located, cutover_core::Weights), BackendError> {
        let at = (self.locate)(value)?;
        let p = weight_at(value, &at.primary, at.absent)?;
        let d = weight_at(value, &at.dr, at.absent)?;
        if p + d == 0 {
            return Err(BackendError::Invalid(format!(
                "both weights are 0 ({} and {}); the route sends no traffic to either site",
                at.primary, at.dr
            )));
        }
        let primary = ((p as f64) * 100.0 / ((p + d) as f64)).round() as u8;
        Ok((at, cutover_core::Weights::from_primary(primary)?))
    }
}

#[async_trait::async_trait]
impl crate::TrafficBackend for RoutedObject {
    fn describe(&self) -> String {
        self.obj
            .try_lock()
            .map(|o| o.describe())
            .unwrap_or_else(|_| "kubernetes object".into())
    }

    async fn get_weights(&self) -> Result<cutover_core::Weights, BackendError> {
        let (_, value) = self.fetch().await?;
        self.weights(&value).map(|(_, w)| w)
    }

    async fn set_weights(
        &self,
        w: cutover_core::Weights,
        note: &str,
    ) -> Result<cutover_core::Applied, BackendError> {
        for attempt in 1..=self.max_conflicts {
            let (obj, mut value) = self.fetch().await?;
            let (at, _) = self.weights(&value)?;
            set_weight(&mut value, &at.primary, u64::from(w.primary()))?;
            set_weight(&mut value, &at.dr, u64::from(w.dr()))?;
            annotate(
                &mut value,
                "cutover.dev/weights",
                &format!("primary={} dr={}", w.primary(), w.dr()),
            );
            if !note.is_empty() {
                annotate(&mut value, "cutover.dev/run", note);
            }
            match obj.replace(&self.client, &value).await {
                Ok(done) => {
                    return Ok(cutover_core::Applied {
                        weights: w,
                        change: done["metadata"]["resourceVersion"]
                            .as_str()
                            .map(str::to_string),
                    });
                }
                Err(e) if is_conflict(&e) && attempt < self.max_conflicts => {
                    let wait = Duration::from_millis(50) * (1u32 << attempt.min(6));
                    tracing::warn!(object = %obj.describe(), attempt, "resourceVersion conflict: someone else changed the object; re-reading and retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(obj.error("update", e)),
            }
        }
        Err(BackendError::Conflict(
            "too many conflicting writers".into(),
        ))
    }

    fn object_lock(&self) -> Option<std::sync::Arc<dyn cutover_core::lock::ObjectLock>> {
        Some(self.lock.clone())
    }

    async fn announce(&self, reason: &str, note: &str, warning: bool) {
        let obj = self.obj.lock().await.clone();
        let uid = self.uid.lock().unwrap_or_else(|p| p.into_inner()).clone();
        obj.event(&self.client, uid, reason, note, warning).await;
    }
}
