//! `cutover manifests` as a cluster would receive it: for every shipped policy, every
//! document parses strictly as its Kubernetes kind (nothing dropped by the k8s-openapi
//! types), every RBAC rule is least-privilege (no wildcard, `resourceNames` wherever the verb
//! allows one), the Job is hardened and outlives the plan's worst case — and the files in
//! `deploy/` are exactly what the command prints today.
//!
//! Regenerate `deploy/` with `bash deploy/generate.sh`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use cutover_core::policy::backend::Backend;
use cutover_tests::cli::cutover;
use cutover_tests::workspace;

/// The shipped policies that get a file in `deploy/` (all but the demo's).
fn deployable() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(workspace().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.ends_with("demo.yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 4, "{v:?}");
    v
}

fn relative(p: &Path) -> String {
    p.strip_prefix(workspace()).unwrap().display().to_string()
}

fn manifests(policy: &str, extra: &[&str]) -> String {
    let mut args = vec!["manifests", policy];
    args.extend_from_slice(extra);
    let (code, out) = cutover(&args);
    assert_eq!(code, 0, "cutover manifests {policy}:\n{out}");
    out
}

/// Every document of a multi-document YAML stream, as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("each document is YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Deserializes `doc` as `T` and serializes it back: equal only if the type knew every
/// field (k8s-openapi ignores unknown ones, so a typo would vanish here and fail).
fn strictly<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("not a valid {}: {e}\n{doc:#}", doc["kind"]));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, doc,
        "a field was dropped or changed by the typed round trip"
    );
    typed
}

fn check_rule(role: &str, rule: &k8s_openapi::api::rbac::v1::PolicyRule) {
    let all = rule
        .api_groups
        .iter()
        .flatten()
        .chain(rule.resources.iter().flatten())
        .chain(rule.resource_names.iter().flatten())
        .chain(rule.verbs.iter());
    for s in all {
        assert!(!s.contains('*'), "{role}: wildcard in {rule:?}");
    }
    assert!(rule.non_resource_urls.is_none(), "{role}: {rule:?}");
    match &rule.resource_names {
        Some(names) => assert!(!names.is_empty(), "{role}: {rule:?}"),
        None => {
            // Only `create` cannot be scoped by name; and only Events are created.
            assert_eq!(rule.verbs, vec!["create".to_string()], "{role}: {rule:?}");
            assert_eq!(
                rule.resources.as_deref(),
                Some(&["events".to_string()][..]),
                "{role}: {rule:?}"
            );
        }
    }
    for v in &rule.verbs {
        assert!(
            ["get", "update", "patch", "create"].contains(&v.as_str()),
            "{role}: verb {v} is more than cutover needs"
        );
    }
}

#[test]
fn every_policy_gives_strictly_valid_least_privilege_manifests() {
    for path in deployable() {
        let rel = relative(&path);
        let loaded = cutover_core::policy::load(&path).unwrap();
        let docs = documents(&manifests(&rel, &["--namespace", "failback"]));
        let (mut sa, mut job, mut roles, mut bindings, mut leases, mut configmaps) =
            (None, None, Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for d in &docs {
            match d["kind"].as_str().unwrap() {
                "ConfigMap" => configmaps.push(strictly::<ConfigMap>(d)),
                "ServiceAccount" => sa = Some(strictly::<ServiceAccount>(d)),
                "Role" => roles.push(strictly::<Role>(d)),
                "RoleBinding" => bindings.push(strictly::<RoleBinding>(d)),
                "Lease" => leases.push(strictly::<Lease>(d)),
                "Job" => job = Some(strictly::<Job>(d)),
                k => panic!("{rel}: unexpected kind {k}"),
            }
        }
        let sa = sa.unwrap_or_else(|| panic!("{rel}: no ServiceAccount"));
        let job = job.unwrap_or_else(|| panic!("{rel}: no Job"));
        let sa_name = sa.metadata.name.clone().unwrap();
        assert_eq!(sa.metadata.namespace.as_deref(), Some("failback"));

        // The policy, verbatim.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            configmaps.iter().any(|c| c
                .data
                .as_ref()
                .is_some_and(|d| d.values().any(|v| *v == text))),
            "{rel}: the policy ConfigMap does not hold the file as it is"
        );

        // RBAC: least privilege, every Role bound to the Job's ServiceAccount or the
        // operator's.
        for r in &roles {
            let name = r.metadata.name.clone().unwrap();
            for rule in r.rules.iter().flatten() {
                check_rule(&name, rule);
            }
            if !name.ends_with("-operator") {
                assert!(
                    bindings.iter().any(|b| b.role_ref.name == name
                        && b.metadata.namespace == r.metadata.namespace
                        && b.subjects.iter().flatten().any(|s| s.name == sa_name)),
                    "{rel}: Role {name} is not bound to {sa_name}"
                );
            }
        }
        let names_of = |resource: &str| -> Vec<String> {
            roles
                .iter()
                .filter(|r| !r.metadata.name.as_ref().unwrap().ends_with("-operator"))
                .flat_map(|r| r.rules.iter().flatten())
                .filter(|rule| rule.resources.iter().flatten().any(|x| x == resource))
                .flat_map(|rule| rule.resource_names.iter().flatten().cloned())
                .collect()
        };
        assert_eq!(
            names_of("configmaps").len(),
            1,
            "{rel}: one state ConfigMap"
        );
        let lease = cutover_backends::lock::lease::lease_of(&loaded.backend);
        match &loaded.backend {
            Backend::Istio(c) => {
                assert_eq!(names_of("virtualservices"), vec![c.virtual_service.clone()])
            }
            Backend::GatewayApi(c) => {
                assert_eq!(names_of("httproutes"), vec![c.http_route.clone()])
            }
            Backend::Route53(_) => {
                let arn = sa
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("eks.amazonaws.com/role-arn"));
                assert!(
                    arn.is_some_and(|a| a.starts_with("arn:aws:iam::")),
                    "{rel}: IRSA annotation"
                );
            }
            Backend::File(_) => {}
        }
        match lease {
            Some((ns, name)) => {
                assert_eq!(names_of("leases"), vec![name.clone()], "{rel}");
                assert!(
                    leases
                        .iter()
                        .any(|l| l.metadata.name.as_deref() == Some(&name)
                            && l.metadata.namespace.as_deref() == Some(&ns)),
                    "{rel}: the Lease {ns}/{name} the run takes is created up front"
                );
            }
            None => assert!(names_of("leases").is_empty() && leases.is_empty(), "{rel}"),
        }

        // The Job.
        let spec = job.spec.as_ref().unwrap();
        let worst: Duration = loaded
            .plan
            .stages
            .iter()
            .filter(|s| s.judged)
            .map(|s| s.max_duration + s.interval)
            .sum();
        let deadline = spec.active_deadline_seconds.unwrap();
        assert!(
            deadline as u64 > worst.as_secs(),
            "{rel}: activeDeadlineSeconds {deadline} is not above the worst case {worst:?}"
        );
        let rules = &spec.pod_failure_policy.as_ref().unwrap().rules;
        let fail: Vec<i32> = rules
            .iter()
            .filter(|r| r.action == "FailJob")
            .flat_map(|r| r.on_exit_codes.iter().flat_map(|c| c.values.clone()))
            .collect();
        for code in [1, 2, 3, 4, 5, 10] {
            assert!(
                fail.contains(&code),
                "{rel}: exit {code} must fail the Job, not retry"
            );
        }
        assert!(
            spec.backoff_limit.is_some_and(|b| b > 0),
            "{rel}: a crash is retried"
        );
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some(sa_name.as_str()));
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true), "{rel}");
        assert_eq!(sc.run_as_user, Some(65532), "{rel}");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{rel}");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{rel}");
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let res = c.resources.as_ref().unwrap();
        assert!(
            res.requests.as_ref().unwrap().contains_key("memory"),
            "{rel}"
        );
        assert!(res.limits.as_ref().unwrap().contains_key("memory"), "{rel}");
        assert!(
            c.ports.iter().flatten().any(|p| p.container_port == 9102),
            "{rel}: the metrics port"
        );
        let run_id = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "CUTOVER_RUN_ID")
            .unwrap_or_else(|| panic!("{rel}: CUTOVER_RUN_ID"));
        assert_eq!(
            run_id
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.labels['batch.kubernetes.io/controller-uid']"
        );
        let args = c.args.as_ref().unwrap();
        assert_eq!(args[0], "run");
        let state = names_of("configmaps").remove(0);
        assert!(
            args.contains(&format!("--state-configmap=failback/{state}")),
            "{rel}: the run keeps its state in the ConfigMap the Role names: {args:?}"
        );
        if let Backend::File(_) = &loaded.backend {
            assert!(
                pod.volumes
                    .iter()
                    .flatten()
                    .any(|v| v.persistent_volume_claim.is_some()),
                "{rel}: the weights file lives on a volume"
            );
        }
    }
}

#[test]
fn a_relative_weights_file_is_refused_with_the_fix() {
    let dir = cutover_tests::TempDir::new("manifests-relative");
    let policy = std::fs::read_to_string(workspace().join("policies/batch-file.yaml"))
        .unwrap()
        .replace("/var/run/cutover/batch-api-weights.json", "weights.json");
    let file = dir.path().join("batch.yaml");
    std::fs::write(&file, policy).unwrap();
    let (code, out) = cutover(&["manifests", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("backend.file.path") && out.contains("absolute"),
        "{out}"
    );
}

#[test]
fn a_namespace_that_is_no_dns_label_is_refused_with_the_fix() {
    let (code, out) = cutover(&[
        "manifests",
        "policies/checkout.yaml",
        "--namespace",
        "Fail_Back",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("--namespace `Fail_Back`") && out.contains("DNS label"),
        "{out}"
    );
}

#[test]
fn deploy_holds_the_generated_manifests_of_every_policy() {
    for path in deployable() {
        let rel = relative(&path);
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let file = workspace().join("deploy").join(format!("{stem}.yaml"));
        let want = manifests(&rel, &[]);
        let have = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            have == want,
            "{} is missing or stale: regenerate deploy/ with `bash deploy/generate.sh`",
            file.display()
        );
    }
}
