//! The lock record of a routed Kubernetes object (a VirtualService route, an HTTPRoute
//! rule): a `coordination.k8s.io/v1` Lease in the object's namespace, named from the
//! object's identity, so every controller that could touch the object — whatever its state
//! ConfigMap — finds the same Lease. The record is the `cutover.dev/lock` annotation; the
//! Lease's own `holderIdentity`, `renewTime` and `leaseDurationSeconds` mirror it for
//! `kubectl`. Every change is a PUT with the resourceVersion read (or a create that fails
//! with 409 if the Lease appeared meanwhile): a compare-and-swap.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::kube_api::{core_ref, get, write};
use crate::traffic::k8s::ObjectRef;
use cutover_core::BackendError;
use cutover_core::lock::{LockRecord, ObjectLock, Versioned, stable_hash};

const ANNOTATION: &str = "cutover.dev/lock";

/// The Lease holding the lock record of one routed object.
pub struct LeaseLock {
    client: kube::Client,
    lease: ObjectRef,
    identity: String,
}

/// The Lease name for a routed object: readable, at most 63 characters, and unique per
/// identity (kind, namespace, name, route) through a stable hash.
pub fn lease_name(kind: &str, name: &str, identity: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(20)
        .collect();
    format!(
        "cutover-{}-{}-{:016x}",
        kind.to_ascii_lowercase(),
        clean.trim_matches('-'),
        stable_hash(identity)
    )
}

/// The identity and the Lease name of the part `part` (e.g. `route primary-dr`) of the
/// object `kind namespace/name`.
pub fn lease_for(kind: &str, namespace: &str, name: &str, part: &str) -> (String, String) {
    let identity = format!("{kind} {namespace}/{name} {part}");
    let lease = lease_name(kind, name, &identity);
    (identity, lease)
}

/// The Lease (namespace, name) that locks the routed object of a Kubernetes backend, as a
/// run takes it; `None` for backends whose lock is not a Lease (file, Route 53). Used to
/// write manifests whose RBAC names exactly this Lease.
pub fn lease_of(backend: &cutover_core::policy::backend::Backend) -> Option<(String, String)> {
    use cutover_core::policy::backend::Backend;
    let (kind, namespace, name, part) = match backend {
        Backend::Istio(c) => (
            "VirtualService",
            &c.namespace,
            &c.virtual_service,
            format!("route {}", c.route),
        ),
        Backend::GatewayApi(c) => (
            "HTTPRoute",
            &c.namespace,
            &c.http_route,
            crate::traffic::gateway_api::gateway_part(c),
        ),
        Backend::Route53(_) | Backend::File(_) => return None,
    };
    Some((namespace.clone(), lease_for(kind, namespace, name, &part).1))
}

impl LeaseLock {
    /// The lock of the object `identity` (e.g. `VirtualService production/checkout route
    /// primary-dr`), kept in Lease `namespace/name`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str) -> LeaseLock {
        LeaseLock {
            client,
            lease: core_ref(
                "Lease",
                "leases",
                "coordination.k8s.io",
                "v1",
                namespace,
                name,
            ),
            identity: identity.to_string(),
        }
    }
}

fn micro(secs: u64) -> String {
    humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

#[async_trait]
impl ObjectLock for LeaseLock {
    fn describe(&self) -> String {
        format!("{} (lock of {})", self.lease.describe(), self.identity)
    }

    async fn read(&self) -> Result<Option<Versioned>, BackendError> {
        let Some(lease) = get(&self.client, &self.lease).await? else {
            return Ok(None);
        };
        let version = lease["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let record = match lease["metadata"]["annotations"][ANNOTATION].as_str() {
            None => LockRecord::default(),
            Some(text) => serde_json::from_str(text).map_err(|e| {
                BackendError::Invalid(format!(
                    "{}: annotation {ANNOTATION} is not a cutover lock record ({e}); if no run drives {}, delete the Lease",
                    self.lease.describe(),
                    self.identity
                ))
            })?,
        };
        Ok(Some(Versioned { record, version }))
    }

    async fn swap(&self, expected: Option<&str>, new: &LockRecord) -> Result<(), BackendError> {
        let text = serde_json::to_string(new).expect("lock record serializes");
        let spec = match &new.holder {
            Some(h) => json!({
                "holderIdentity": format!("{}@{}#{}", h.run_id, h.host, h.pid),
                "leaseDurationSeconds": h.ttl,
                "acquireTime": micro(h.acquired),
                "renewTime": micro(h.renewed),
            }),
            None => json!({}),
        };
        let (lease, create) = match expected {
            None => (
                json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {
                        "name": self.lease.name, "namespace": self.lease.namespace,
                        "labels": {"app.kubernetes.io/managed-by": "cutover"},
                        "annotations": {ANNOTATION: text, "cutover.dev/object": self.identity},
                    },
                    "spec": spec,
                }),
                true,
            ),
            Some(version) => {
                // Re-read to keep every other field; the PUT names the version we compared
                // against, so a change in between is a 409, never overwritten.
                let mut l = get(&self.client, &self.lease).await?.ok_or_else(|| {
                    BackendError::Conflict(format!("{} was deleted", self.lease.describe()))
                })?;
                l["metadata"]["resourceVersion"] = Value::String(version.to_string());
                crate::traffic::k8s::annotate(&mut l, ANNOTATION, &text);
                l["spec"] = spec;
                (l, false)
            }
        };
        match write(&self.client, &self.lease, &lease, create).await {
            Ok(_) => Ok(()),
            Err(BackendError::Conflict(m)) => Err(BackendError::Conflict(m)),
            Err(BackendError::Invalid(m)) if create && m.contains("already exists") => {
                Err(BackendError::Conflict(m))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_short_readable_and_unique_per_route() {
        let a = lease_name(
            "VirtualService",
            "checkout",
            "VirtualService production/checkout route a",
        );
        let b = lease_name(
            "VirtualService",
            "checkout",
            "VirtualService production/checkout route b",
        );
        assert!(a.starts_with("cutover-virtualservice-checkout-"), "{a}");
        assert_ne!(a, b);
        let long = lease_name("HTTPRoute", &"x.y".repeat(40), "id");
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{long}"
        );
    }
}
