//! An emulation of the Kubernetes API server's HTTP behaviour for the kinds cutover touches,
//! on loopback, for kube-rs's real client to talk to through a generated kubeconfig.
//!
//! It follows the API conventions (https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md
//! and https://kubernetes.io/docs/reference/using-api/api-concepts/):
//! * every write bumps `metadata.resourceVersion` (an opaque string clients must echo back);
//! * an update whose `resourceVersion` is not the stored one is `409 Conflict`, reason
//!   `Conflict` ("the object has been modified; please apply your changes to the latest
//!   version and try again"); an update without one is unconditional;
//! * a missing object is `404`, reason `NotFound`, `details.name`/`group`/`kind`; an unknown
//!   resource type is `404` without details ("the server could not find the requested resource");
//! * a verb the caller's RBAC lacks is `403`, reason `Forbidden`, with the user, verb,
//!   resource, group and namespace in the message;
//! * errors are `Status` objects (`kind: Status`, `status: Failure`, `code`, `reason`);
//! * `PATCH` with `application/merge-patch+json` (RFC 7386), `application/json-patch+json`
//!   (RFC 6902, `test`/`replace`/`add`/`remove`) and `application/apply-patch+yaml`
//!   (server-side apply, approximated as a merge of the applied fields: no managedFields
//!   ownership); `POST` creates (`201`), `generateName` honoured.
//!
//! Objects are validated against the fields of the real CRD schemas that cutover writes:
//! Istio's `HTTPRouteDestination.weight` is an int32 (`format: int32`), Gateway API's
//! `backendRefs[].weight` an int32 with `minimum: 0`, `maximum: 1000000`; a violation is
//! `422 Invalid` as the API server's structural-schema validation answers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::http1::{read_request, write_response};

pub mod workloads;

/// One request the emulator answered.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The verb (get, update, patch, create).
    pub verb: String,
    /// The path.
    pub path: String,
    /// The status code.
    pub code: u16,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    rv: u64,
    forbidden: BTreeSet<(String, String)>,
    log: Vec<Logged>,
    foreign_write_before_next_update: Option<Value>,
    events: Vec<Value>,
}

/// A running emulator; stops when dropped.
pub struct KubeApi {
    state: Arc<Mutex<State>>,
    /// Its base URL.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

const KINDS: &[(&str, &str, &str, &str)] = &[
    (
        "networking.istio.io",
        "v1",
        "virtualservices",
        "VirtualService",
    ),
    ("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
    ("events.k8s.io", "v1", "events", "Event"),
    ("", "v1", "configmaps", "ConfigMap"),
    ("coordination.k8s.io", "v1", "leases", "Lease"),
    // Read by `kubernetes_capacity`; its status is the Deployment controller's to write
    // (`set_ready_replicas`), as in a cluster where `status` is a subresource.
    ("apps", "v1", "deployments", "Deployment"),
    // The fleet's Kubernetes executor: its Jobs, their pods (see `workloads`).
    ("batch", "v1", "jobs", "Job"),
    ("", "v1", "pods", "Pod"),
];

fn status(code: u16, reason: &str, message: String, details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "details": details, "code": code})
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("a JSON patch is an array")? {
        let path = op["path"].as_str().ok_or("op without path")?;
        match op["op"].as_str() {
            Some("test") => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(format!("test failed at {path}"));
                }
            }
            Some("replace") => {
                *target.pointer_mut(path).ok_or(format!("no {path}"))? = op["value"].clone()
            }
            Some("add") | Some("remove") => {
                let (parent, key) = path.rsplit_once('/').ok_or("bad path")?;
                let p = target.pointer_mut(parent).ok_or(format!("no {parent}"))?;
                match (p, op["op"].as_str()) {
                    (Value::Object(m), Some("add")) => {
                        m.insert(key.to_string(), op["value"].clone());
                    }
                    (Value::Object(m), _) => {
                        m.remove(key);
                    }
                    (Value::Array(a), Some("add")) => {
                        let i = if key == "-" {
                            a.len()
                        } else {
                            key.parse().map_err(|_| "bad index")?
                        };
                        a.insert(i, op["value"].clone());
                    }
                    (Value::Array(a), _) => {
                        a.remove(key.parse::<usize>().map_err(|_| "bad index")?);
                    }
                    _ => return Err(format!("{parent} is not a container")),
                }
            }
            other => return Err(format!("unsupported op {other:?}")),
        }
    }
    Ok(())
}

/// The CRD-schema checks of the fields cutover writes.
fn validate(plural: &str, obj: &Value) -> Result<(), String> {
    let int32 = |v: &Value, at: &str, max: i64| -> Result<(), String> {
        match v {
            Value::Null => Ok(()),
            v if v.as_i64().is_some_and(|n| (0..=max).contains(&n)) => Ok(()),
            v => Err(format!(
                "{at}: Invalid value: {v}: must be an integer between 0 and {max}"
            )),
        }
    };
    match plural {
        "virtualservices" => {
            for (i, r) in obj["spec"]["http"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                for (j, d) in r["route"].as_array().into_iter().flatten().enumerate() {
                    int32(
                        &d["weight"],
                        &format!("spec.http[{i}].route[{j}].weight"),
                        i32::MAX as i64,
                    )?;
                }
            }
        }
        "httproutes" => {
            for (i, r) in obj["spec"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                for (j, b) in r["backendRefs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    int32(
                        &b["weight"],
                        &format!("spec.rules[{i}].backendRefs[{j}].weight"),
                        1_000_000,
                    )?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

impl State {
    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn handle(&mut self, method: &str, target: &str, ctype: &str, body: &[u8]) -> (u16, Value) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]
        let known =
            |g: &str, v: &str, p: &str| KINDS.iter().find(|k| k.0 == g && k.1 == v && k.2 == p);
        // An unknown path or resource type: 404 without details.
        let no_such_resource = || {
            (
                404,
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource".into(),
                    json!({}),
                ),
            )
        };
        let (group, version, ns, plural, name) = match parts.as_slice() {
            ["api", v, "namespaces", ns, p] => ("", *v, *ns, *p, None),
            ["api", v, "namespaces", ns, p, n] => ("", *v, *ns, *p, Some(*n)),
            ["apis", g, v, "namespaces", ns, p] => (*g, *v, *ns, *p, None),
            ["apis", g, v, "namespaces", ns, p, n] => (*g, *v, *ns, *p, Some(*n)),
            _ => return no_such_resource(),
        };
        let Some(kind) = known(group, version, plural) else {
            return no_such_resource();
        };
        let verb = match (method, name) {
            ("GET", Some(_)) => "get",
            ("GET", None) => "list",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("POST", _) => "create",
            ("DELETE", _) => "delete",
            _ => {
                return (
                    405,
                    status(
                        405,
                        "MethodNotAllowed",
                        format!("{method} is not supported"),
                        json!({}),
                    ),
                );
            }
        };
        if self
            .forbidden
            .contains(&(verb.to_string(), plural.to_string()))
        {
            let msg = format!(
                "{plural}.{group}{} is forbidden: User \"system:serviceaccount:cutover:cutover\" cannot {verb} resource \"{plural}\" in API group \"{group}\" in the namespace \"{ns}\"",
                name.map(|n| format!(" \"{n}\"")).unwrap_or_default()
            );
            return (
                403,
                status(
                    403,
                    "Forbidden",
                    msg,
                    json!({"name": name, "group": group, "kind": plural}),
                ),
            );
        }
        let collection = if group.is_empty() {
            format!("/api/{version}/namespaces/{ns}/{plural}")
        } else {
            format!("/apis/{group}/{version}/namespaces/{ns}/{plural}")
        };
        let not_found = |n: &str| {
            (
                404,
                status(
                    404,
                    "NotFound",
                    format!("{plural}.{group} \"{n}\" not found"),
                    json!({"name": n, "group": group, "kind": plural}),
                ),
            )
        };
        let parsed: Result<Value, _> = if body.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(body)
        };
        let Ok(input) = parsed else {
            return (
                400,
                status(400, "BadRequest", "the body is not JSON".into(), json!({})),
            );
        };
        match verb {
            "list" => (200, self.list(&collection, kind.3, query)),
            "get" => {
                let n = name.expect("get has a name");
                match self.objects.get(&format!("{collection}/{n}")) {
                    Some(o) => (200, o.clone()),
                    None => not_found(n),
                }
            }
            "create" => {
                let mut obj = input;
                let n = match obj["metadata"]["name"].as_str() {
                    Some(n) => n.to_string(),
                    None => {
                        let prefix = obj["metadata"]["generateName"]
                            .as_str()
                            .unwrap_or("obj-")
                            .to_string();
                        let n = format!("{prefix}{}", self.rv + 1);
                        obj["metadata"]["name"] = json!(n);
                        n
                    }
                };
                let key = format!("{collection}/{n}");
                if self.objects.contains_key(&key) {
                    return (
                        409,
                        status(
                            409,
                            "AlreadyExists",
                            format!("{plural}.{group} \"{n}\" already exists"),
                            json!({"name": n}),
                        ),
                    );
                }
                obj["metadata"]["resourceVersion"] = json!(self.bump());
                obj["metadata"]["namespace"] = json!(ns);
                workloads::on_create(&mut obj, plural, self.rv);
                if plural == "events" {
                    self.events.push(obj.clone());
                }
                self.objects.insert(key, obj.clone());
                (201, obj)
            }
            "update" | "patch" => {
                let n = name.expect("writes have a name");
                let key = format!("{collection}/{n}");
                if verb == "update"
                    && let Some(foreign) = self.foreign_write_before_next_update.take()
                {
                    // Another controller writes between our client's read and its write.
                    if let Some(o) = self.objects.get_mut(&key) {
                        merge_patch(o, &foreign);
                    }
                    let rv = self.bump();
                    if let Some(o) = self.objects.get_mut(&key) {
                        o["metadata"]["resourceVersion"] = json!(rv);
                    }
                }
                let Some(current) = self.objects.get(&key).cloned() else {
                    return not_found(n);
                };
                let new = if verb == "update" {
                    input
                } else {
                    let mut o = current.clone();
                    let r = if ctype.starts_with("application/json-patch+json") {
                        json_patch(&mut o, &input)
                    } else if ctype.starts_with("application/merge-patch+json") {
                        merge_patch(&mut o, &input);
                        Ok(())
                    } else if ctype.starts_with("application/apply-patch+yaml") {
                        // Server-side apply, approximated: the applied fields are merged in
                        // (no managedFields ownership or field-manager conflicts).
                        merge_patch(&mut o, &input);
                        Ok(())
                    } else {
                        Err(format!("unsupported patch type {ctype}"))
                    };
                    if let Err(e) = r {
                        return (422, status(422, "Invalid", e, json!({"name": n})));
                    }
                    o
                };
                let mut new = new;
                if matches!(plural, "deployments" | "jobs" | "pods") {
                    // `status` is a subresource: writes of the object leave it as it is.
                    new["status"] = current["status"].clone();
                }
                let sent_rv = new["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
                if let Some(rv) = sent_rv
                    && Some(rv.as_str()) != current["metadata"]["resourceVersion"].as_str()
                {
                    return (
                        409,
                        status(
                            409,
                            "Conflict",
                            format!(
                                "Operation cannot be fulfilled on {plural}.{group} \"{n}\": the object has been modified; please apply your changes to the latest version and try again"
                            ),
                            json!({"name": n, "group": group, "kind": plural}),
                        ),
                    );
                }
                if new["metadata"]["name"].as_str() != Some(n)
                    || new["kind"].as_str() != Some(kind.3)
                {
                    return (
                        400,
                        status(
                            400,
                            "BadRequest",
                            "the name or kind of the body does not match the URL".into(),
                            json!({}),
                        ),
                    );
                }
                if let Err(e) = validate(plural, &new) {
                    return (
                        422,
                        status(
                            422,
                            "Invalid",
                            format!("{} \"{n}\" is invalid: {e}", kind.3),
                            json!({"name": n}),
                        ),
                    );
                }
                let mut stored = new;
                stored["metadata"]["resourceVersion"] = json!(self.bump());
                if stored["spec"] != current["spec"] {
                    let g = current["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                    stored["metadata"]["generation"] = json!(g);
                }
                self.objects.insert(key, stored.clone());
                (200, stored)
            }
            _ => (
                405,
                status(
                    405,
                    "MethodNotAllowed",
                    format!("{verb} is not emulated"),
                    json!({}),
                ),
            ),
        }
    }
}

/// Stores `o` at its API path with a fresh resourceVersion (core kinds under `/api/v1`).
fn store(s: &mut State, mut o: Value) {
    let api_version = o["apiVersion"].as_str().expect("apiVersion").to_string();
    let kind = KINDS
        .iter()
        .find(|k| {
            if k.0.is_empty() {
                k.1 == api_version
            } else {
                format!("{}/{}", k.0, k.1) == api_version
            }
        })
        .expect("emulated kind");
    let ns = o["metadata"]["namespace"]
        .as_str()
        .expect("namespace")
        .to_string();
    let name = o["metadata"]["name"].as_str().expect("name").to_string();
    let root = if kind.0.is_empty() { "api" } else { "apis" };
    o["metadata"]["resourceVersion"] = json!(s.bump());
    s.objects.insert(
        format!("/{root}/{api_version}/namespaces/{ns}/{}/{name}", kind.2),
        o,
    );
}

impl KubeApi {
    /// Starts the emulator holding `objects` (each with apiVersion, kind, metadata).
    pub async fn start(objects: Vec<Value>) -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        for o in objects {
            store(&mut state.lock().unwrap(), o);
        }
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(Some(req)) = read_request(&mut sock).await else {
                        return;
                    };
                    let ctype = req.header("content-type").unwrap_or("").to_string();
                    let (code, body) = {
                        let mut s = st.lock().unwrap();
                        let (code, body) = s.handle(&req.method, &req.target, &ctype, &req.body);
                        let verb = req.method.clone();
                        s.log.push(Logged {
                            verb,
                            path: req.path().to_string(),
                            code,
                        });
                        (code, body)
                    };
                    let _ = write_response(
                        &mut sock,
                        code,
                        "application/json",
                        &serde_json::to_vec(&body).unwrap(),
                    )
                    .await;
                });
            }
        });
        KubeApi { state, url, task }
    }

    /// Writes a kubeconfig pointing at the emulator.
    pub fn kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulated\n  cluster:\n    server: {}\nusers:\n- name: cutover\n  user:\n    token: emulated-token\ncontexts:\n- name: emulated\n  context:\n    cluster: emulated\n    user: cutover\ncurrent-context: emulated\n",
            self.url
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    /// The stored object at an API path (`/apis/.../name`).
    pub fn object(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Stores one more object (apiVersion, kind, metadata), as `kubectl apply` would.
    pub fn insert(&self, object: Value) {
        store(&mut self.state.lock().unwrap(), object);
    }

    /// Denies `verb` (get, update, patch, create) on `plural` from now on.
    pub fn forbid(&self, verb: &str, plural: &str) {
        self.state
            .lock()
            .unwrap()
            .forbidden
            .insert((verb.into(), plural.into()));
    }

    /// Someone else (an operator with kubectl) sets one field of a stored object, at a JSON
    /// pointer, bumping its resourceVersion.
    pub fn set_field(&self, path: &str, pointer: &str, value: Value) {
        let mut s = self.state.lock().unwrap();
        let rv = s.bump();
        let o = s.objects.get_mut(path).expect("a stored object");
        *o.pointer_mut(pointer).expect("an existing field") = value;
        o["metadata"]["resourceVersion"] = json!(rv);
    }

    /// The Deployment controller reports `ready` of a Deployment's pods ready: sets
    /// `status.readyReplicas` (and `availableReplicas`), omitted when zero as the API server
    /// omits empty fields, and bumps the resourceVersion.
    pub fn set_ready_replicas(&self, namespace: &str, name: &str, ready: u32) {
        let mut s = self.state.lock().unwrap();
        let rv = s.bump();
        let path = format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}");
        let o = s.objects.get_mut(&path).expect("a stored Deployment");
        let st = o["status"].as_object_mut().expect("a Deployment status");
        for f in ["readyReplicas", "availableReplicas"] {
            if ready == 0 {
                st.remove(f);
            } else {
                st.insert(f.into(), json!(ready));
            }
        }
        o["metadata"]["resourceVersion"] = json!(rv);
    }

    /// Before the next update, another writer merge-patches the object (bumping its
    /// resourceVersion), so that update arrives stale.
    pub fn foreign_write_before_next_update(&self, patch: Value) {
        self.state.lock().unwrap().foreign_write_before_next_update = Some(patch);
    }

    /// Every request answered.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Events created.
    pub fn events(&self) -> Vec<Value> {
        self.state.lock().unwrap().events.clone()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_not_found_and_forbidden_follow_the_conventions() {
        let mut s = State {
            rv: 1,
            ..State::default()
        };
        let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "a", "namespace": "n", "resourceVersion": "1"}, "spec": {}});
        s.objects.insert(
            "/apis/networking.istio.io/v1/namespaces/n/virtualservices/a".into(),
            vs.clone(),
        );
        let p = "/apis/networking.istio.io/v1/namespaces/n/virtualservices/a";
        let (c, body) = s.handle(
            "PUT",
            p,
            "application/json",
            &serde_json::to_vec(&vs).unwrap(),
        );
        assert_eq!(c, 200, "{body}");
        assert_ne!(
            body["metadata"]["resourceVersion"], "1",
            "a write bumps resourceVersion"
        );
        let (c, body) = s.handle(
            "PUT",
            p,
            "application/json",
            &serde_json::to_vec(&vs).unwrap(),
        );
        assert_eq!(
            (c, body["reason"].as_str()),
            (409, Some("Conflict")),
            "a stale resourceVersion"
        );
        let (c, body) = s.handle(
            "GET",
            "/apis/networking.istio.io/v1/namespaces/n/virtualservices/b",
            "",
            b"",
        );
        assert_eq!((c, body["details"]["name"].as_str()), (404, Some("b")));
        let (c, body) = s.handle(
            "GET",
            "/apis/networking.istio.io/v1alpha9/namespaces/n/virtualservices/a",
            "",
            b"",
        );
        assert_eq!(c, 404);
        assert!(
            body["details"].get("name").is_none(),
            "an unknown resource type has no details"
        );
        let (c, _) = s.handle(
            "PATCH",
            p,
            "application/apply-patch+yaml",
            br#"{"metadata": {"labels": {"x": "y"}}}"#,
        );
        assert_eq!(c, 200);
        s.forbidden.insert(("get".into(), "virtualservices".into()));
        let (c, body) = s.handle("GET", p, "", b"");
        assert_eq!((c, body["reason"].as_str()), (403, Some("Forbidden")));
        let bad = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "a"},
            "spec": {"http": [{"route": [{"weight": "ten"}]}]}});
        s.forbidden.clear();
        let (c, _) = s.handle(
            "PUT",
            p,
            "application/json",
            &serde_json::to_vec(&bad).unwrap(),
        );
        assert_eq!(c, 422, "the CRD schema's int32 weight");
    }

    #[test]
    fn merge_and_json_patch_follow_the_rfcs() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"l": [1, 2]});
        json_patch(&mut t, &json!([{"op": "test", "path": "/l/0", "value": 1}, {"op": "replace", "path": "/l/1", "value": 5}])).unwrap();
        assert_eq!(t, json!({"l": [1, 5]}));
        assert!(json_patch(&mut t, &json!([{"op": "test", "path": "/l/0", "value": 9}])).is_err());
    }
}
