//! `cutover fleet export --format argo-workflow`: the fleet's DAG as an Argo Workflows
//! `Workflow`, for teams that run failbacks as workflows: one templated `cutover run` task
//! per service (`depends` on its `after` and on the layer below's soak), a `suspend` task
//! per layer soak, `parallelism` = `max_parallel`, and `failFast`.

use cutover_core::fleet::FleetPlan;
use serde_json::{Value, json};

/// The Workflow, as JSON (printed as YAML by the command).
pub fn workflow(plan: &FleetPlan) -> Result<Value, String> {
    let spec = &plan.spec;
    let Some(k) = &spec.kubernetes else {
        return Err(format!(
            "{}: an Argo Workflow needs the fleet's `kubernetes:` section (namespace, image, service_account)",
            plan.path.display()
        ));
    };
    let task = |s: &str| s.replace(['.', '_'], "-");
    let layers = plan.layers();
    let mut tasks = Vec::new();
    for (k_layer, layer) in layers.iter().enumerate() {
        let below = k_layer.checked_sub(1).map(|b| layers[b]);
        for svc in plan.services.iter().filter(|s| s.layer == *layer) {
            let mut deps: Vec<String> = svc
                .after
                .iter()
                .map(|&j| task(&plan.services[j].name))
                .collect();
            if let Some(b) = below {
                deps.push(format!("soak-layer-{b}"));
            }
            let mut t = json!({
                "name": task(&svc.name),
                "template": "cutover",
                "arguments": {"parameters": [{"name": "service", "value": svc.name}]},
            });
            if !deps.is_empty() {
                t["depends"] = json!(deps.join(" && "));
            }
            tasks.push(t);
        }
        if k_layer + 1 < layers.len() {
            let members: Vec<String> = plan
                .services
                .iter()
                .filter(|s| s.layer == *layer)
                .map(|s| format!("{}.Succeeded", task(&s.name)))
                .collect();
            let soak = plan.soak.get(layer).copied().unwrap_or_default();
            tasks.push(json!({
                "name": format!("soak-layer-{layer}"),
                "template": "soak",
                "arguments": {"parameters": [{"name": "duration", "value": format!("{}s", soak.as_secs())}]},
                "depends": members.join(" && "),
            }));
        }
    }
    let policy_cm = k
        .policy_configmap
        .replace("{service}", "{{inputs.parameters.service}}");
    Ok(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": format!("{}-failback-", spec.fleet),
            "namespace": k.namespace,
            "labels": {"app.kubernetes.io/managed-by": "cutover", "cutover.dev/fleet": spec.fleet},
        },
        "spec": {
            "entrypoint": "failback",
            "serviceAccountName": k.service_account,
            "parallelism": spec.max_parallel,
            "templates": [
                {"name": "failback", "dag": {"failFast": true, "tasks": tasks}},
                {
                    "name": "cutover",
                    "inputs": {"parameters": [{"name": "service"}]},
                    "container": {
                        "image": k.image,
                        "command": ["cutover"],
                        "args": [
                            "run", "/etc/cutover/policy.yaml",
                            "--state-configmap", format!("{}/cutover-{{{{inputs.parameters.service}}}}-run", k.namespace),
                            "--log-format", "json",
                        ],
                        "env": [{"name": "CUTOVER_RUN_ID", "value": "{{workflow.uid}}-{{inputs.parameters.service}}"}],
                        "volumeMounts": [{"name": "policy", "mountPath": "/etc/cutover", "readOnly": true}],
                        "securityContext": {
                            "runAsNonRoot": true, "runAsUser": 65532, "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                        },
                    },
                    "volumes": [{"name": "policy", "configMap": {"name": policy_cm}}],
                },
                {
                    "name": "soak",
                    "inputs": {"parameters": [{"name": "duration"}]},
                    "suspend": {"duration": "{{inputs.parameters.duration}}"},
                },
            ],
        },
    }))
}
