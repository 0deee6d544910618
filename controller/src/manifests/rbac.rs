//! The ServiceAccount, the objects the run writes (state ConfigMap, the routed object's
//! Lease) created up front, and Roles that name every object they allow by `resourceNames`.
//!
//! What the controller does, and so what it is granted: it reads and replaces (GET, PUT
//! with the resourceVersion read) the routed object, its Lease and the state ConfigMap —
//! `get` and `update`, never `patch`, `list`, `watch` or `delete`; and it creates
//! `events.k8s.io` Events on the routed object. `create` cannot be limited by
//! `resourceNames` (the name is not known before the object exists), which is why the
//! Lease and the state ConfigMap are part of the output rather than created by the run.
//! Events are the one unnamed grant: create only, in the routed object's namespace.

use std::collections::BTreeMap;

use cutover_backends::lock::lease::lease_of;
use cutover_core::policy::LoadedPolicy;
use cutover_core::policy::backend::Backend;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::{Document, Names, Options};

/// The annotation of an IRSA ServiceAccount (EKS).
pub const IRSA_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The routed Kubernetes object of a backend: (API group, resource, namespace, name).
pub fn routed_object(backend: &Backend) -> Option<(&'static str, &'static str, &str, &str)> {
    match backend {
        Backend::Istio(c) => Some((
            "networking.istio.io",
            "virtualservices",
            &c.namespace,
            &c.virtual_service,
        )),
        Backend::GatewayApi(c) => Some((
            "gateway.networking.k8s.io",
            "httproutes",
            &c.namespace,
            &c.http_route,
        )),
        Backend::Route53(_) | Backend::File(_) => None,
    }
}

fn rule(group: &str, resource: &str, names: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(vec![resource.to_string()]),
        resource_names: (!names.is_empty()).then(|| names.iter().map(|n| n.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

fn role(names: &Names, name: &str, namespace: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: names.meta(name, namespace),
        rules: Some(rules),
    }
}

fn binding(names: &Names, role: &str, namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: names.meta(role, namespace),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names.base.clone(),
            namespace: Some(names.namespace.clone()),
            ..Default::default()
        }]),
    }
}

/// The rules on the routed object and its Lease (Kubernetes backends), in its namespace.
fn traffic_rules(loaded: &LoadedPolicy) -> Option<(String, Vec<PolicyRule>)> {
    let (group, resource, namespace, name) = routed_object(&loaded.backend)?;
    let (_, lease) = lease_of(&loaded.backend)?;
    Some((
        namespace.to_string(),
        vec![
            rule(group, resource, &[name], &["get", "update"]),
            rule(
                "coordination.k8s.io",
                "leases",
                &[&lease],
                &["get", "update"],
            ),
            // Kubernetes cannot scope `create` by name; Events only, in this namespace.
            rule("events.k8s.io", "events", &[], &["create"]),
        ],
    ))
}

/// ServiceAccount, state ConfigMap, Lease, the controller's Roles and bindings, and the
/// operator's Roles.
pub fn documents(loaded: &LoadedPolicy, names: &Names, opts: &Options) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut sa = ServiceAccount {
        metadata: names.meta(&names.base, &names.namespace),
        ..Default::default()
    };
    if let Backend::Route53(r) = &loaded.backend {
        let arn = opts
            .role_arn
            .clone()
            .unwrap_or_else(|| format!("arn:aws:iam::ACCOUNT_ID:role/{}", names.base));
        sa.metadata.annotations = Some(BTreeMap::from([(IRSA_ANNOTATION.to_string(), arn)]));
        let zone = format!(
            "IRSA (--role-arn): an IAM role allowed route53:ListResourceRecordSets, route53:ChangeResourceRecordSets and route53:GetChange on hosted zone {}, and nothing else.",
            r.hosted_zone_id
        );
        docs.push(Document::of(
            &[
                "The identity of the Job. Route 53 is reached through",
                zone.as_str(),
                "The run lock is the TXT record _cutover-lock.<record name> in that zone.",
            ],
            &sa,
        ));
    } else {
        docs.push(Document::of(&["The identity of the Job."], &sa));
    }
    let state = ConfigMap {
        metadata: names.meta(&names.state_configmap, &names.namespace),
        ..Default::default()
    };
    docs.push(Document::of(
        &[
            "The run state (--state-configmap), created here so the Role needs no `create`;",
            "a restarted pod resumes the recorded stage from it.",
        ],
        &state,
    ));
    let state_rule =
        |verbs: &[&str]| rule("", "configmaps", &[names.state_configmap.as_str()], verbs);
    docs.push(Document::of(
        &["The controller reads and replaces its state ConfigMap, and nothing else here."],
        &role(
            names,
            &names.base,
            &names.namespace,
            vec![state_rule(&["get", "update"])],
        ),
    ));
    docs.push(Document::of(
        &[],
        &binding(names, &names.base, &names.namespace),
    ));
    let traffic = traffic_rules(loaded);
    if let Some((namespace, rules)) = &traffic {
        let (_, lease) = lease_of(&loaded.backend).expect("a Kubernetes backend has a Lease");
        let lock = Lease {
            metadata: names.meta(&lease, namespace),
            ..Default::default()
        };
        docs.push(Document::of(
            &[
                "The lock of the routed object: every run on this route or rule, whatever its",
                "policy or state, takes this Lease (`cutover status` names it). Created here so",
                "the Role needs no `create`; an empty Lease is a free lock.",
            ],
            &lock,
        ));
        let name = format!("{}-traffic", names.base);
        docs.push(Document::of(
            &[
                "The routed object and its Lease by name (GET, then PUT with the resourceVersion",
                "read), and Events on it: `create` cannot be scoped by name.",
            ],
            &role(names, &name, namespace, rules.clone()),
        ));
        docs.push(Document::of(&[], &binding(names, &name, namespace)));
    }
    // `kubernetes_capacity`: read the named Deployments' ready replicas, nothing else.
    let mut by_ns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (ns, d) in loaded.plan.readiness.deployments() {
        by_ns.entry(ns).or_default().push(d);
    }
    for (ns, deployments) in by_ns {
        let name = format!("{}-capacity", names.base);
        let refs: Vec<&str> = deployments.iter().map(String::as_str).collect();
        docs.push(Document::of(
            &["kubernetes_capacity: read the ready replicas of these Deployments only."],
            &role(
                names,
                &name,
                &ns,
                vec![rule("apps", "deployments", &refs, &["get"])],
            ),
        ));
        docs.push(Document::of(&[], &binding(names, &name, &ns)));
    }
    let bind_hint = format!(
        "Bind it to the people who run them: kubectl -n NAMESPACE create rolebinding {0} --role={0} --group=GROUP",
        names.operator_role
    );
    docs.push(Document::of(
        &[
            "For operators (not bound here): `cutover status`, `cutover rollback` and the run",
            "commands (pause, resume, promote, abort, approve) read and change the state.",
            bind_hint.as_str(),
        ],
        &role(names, &names.operator_role, &names.namespace, {
            let mut rules = vec![state_rule(&["get", "update", "patch"])];
            // The routed object in the Job's own namespace: one Role holds both.
            if let Some((namespace, traffic)) = &traffic
                && *namespace == names.namespace
            {
                rules.extend(traffic.iter().cloned());
            }
            rules
        }),
    ));
    if let Some((namespace, rules)) = traffic
        && namespace != names.namespace
    {
        docs.push(Document::of(
            &["For operators: `cutover rollback` writes the weights and brakes the run's Lease."],
            &role(names, &names.operator_role, &namespace, rules),
        ));
    }
    docs
}
