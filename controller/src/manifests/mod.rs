//! `cutover manifests`: everything a cluster needs to run one policy as a Job, generated
//! from the policy so nothing is copied by hand — the policy in a ConfigMap, a
//! ServiceAccount, least-privilege RBAC (every rule names its objects by `resourceNames`,
//! except `create` on Events, which Kubernetes cannot scope by name), the state ConfigMap and
//! the object's Lease created up front (so the Roles need no `create` on them), an operator
//! Role for the commands people run by hand, and the hardened Job.
//!
//! * [`rbac`] — ServiceAccount, Roles and RoleBindings;
//! * [`job`] — the Job: run identity, securityContext, resources, deadline, failure policy.

pub mod job;
pub mod rbac;

use std::time::Duration;

use cutover_core::policy::LoadedPolicy;
use cutover_core::policy::backend::Backend;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// The label every generated object carries, so `kubectl get -l` finds them.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "cutover");

/// What the command line adds to the policy.
#[derive(Debug, Clone)]
pub struct Options {
    /// The container image of the Job.
    pub image: String,
    /// The namespace of the Job, its ServiceAccount and the ConfigMaps.
    pub namespace: String,
    /// Route 53 only: the IAM role of the ServiceAccount (IRSA).
    pub role_arn: Option<String>,
}

/// The names of the generated objects, derived from the service once.
#[derive(Debug, Clone)]
pub struct Names {
    /// The service (the policy's `service`).
    pub service: String,
    /// Namespace of the Job, the ServiceAccount and the ConfigMaps.
    pub namespace: String,
    /// ServiceAccount, Job and the controller's Roles: `<service>-cutover`.
    pub base: String,
    /// ConfigMap holding the policy file.
    pub policy_configmap: String,
    /// Key of the policy file in it (the file's name).
    pub policy_key: String,
    /// ConfigMap holding the run state (`--state-configmap`).
    pub state_configmap: String,
    /// Role of the people who pause, resume, approve or roll back a run.
    pub operator_role: String,
}

impl Names {
    /// The names for a loaded policy in `namespace`.
    pub fn new(loaded: &LoadedPolicy, namespace: &str) -> Names {
        let service = loaded.policy.service.clone();
        let base = format!("{service}-cutover");
        let policy_key = loaded
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "policy.yaml".into());
        Names {
            namespace: namespace.to_string(),
            policy_configmap: format!("{base}-policy"),
            state_configmap: format!("{base}-state"),
            operator_role: format!("{base}-operator"),
            policy_key,
            base,
            service,
        }
    }

    /// Object metadata: `name` in `namespace`, labelled with the service and [`MANAGED_BY`].
    pub fn meta(&self, name: &str, namespace: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(
                [
                    (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                    ("cutover.dev/service".to_string(), self.service.clone()),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }
}

/// One YAML document of the output, with the comment printed above it.
#[derive(Debug, Clone)]
pub struct Document {
    /// Comment lines (without `# `) saying why the object is there.
    pub comment: Vec<String>,
    /// The object as YAML.
    pub yaml: String,
}

impl Document {
    /// A document of any serializable Kubernetes object.
    pub fn of<T: Serialize>(comment: &[&str], object: &T) -> Document {
        Document {
            comment: comment.iter().map(|c| c.to_string()).collect(),
            yaml: serde_norway::to_string(object).expect("Kubernetes objects serialize to YAML"),
        }
    }
}

/// The run's worst case as `cutover plan` computes it: every judged stage at its
/// `max_duration` plus one interval to settle.
pub fn worst_case(loaded: &LoadedPolicy) -> Duration {
    loaded.plan.duration_bounds().1
}

/// Every document for a loaded policy, whose file's text is `policy_text`.
pub fn documents(
    loaded: &LoadedPolicy,
    policy_text: &str,
    opts: &Options,
) -> Result<Vec<Document>, String> {
    let names = Names::new(loaded, &opts.namespace);
    if let Backend::File(f) = &loaded.backend
        && !f.path.is_absolute()
    {
        return Err(format!(
            "{}: backend.file.path: `{}` is relative; a Job mounts the weights' folder, so write an absolute path (e.g. /var/run/cutover/{}-weights.json)",
            loaded.path.display(),
            f.path.display(),
            names.service
        ));
    }
    if !dns_label(&opts.namespace) {
        return Err(format!(
            "--namespace `{}`: a namespace is a DNS label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit",
            opts.namespace
        ));
    }
    // The Job's name becomes its pods' `job-name` label: a DNS label too.
    if !dns_label(&names.base) {
        return Err(format!(
            "{}: service: `{}` gives the Job name `{}`, which is not a DNS label (lowercase letters, digits and '-', at most 63 characters); rename the service",
            loaded.path.display(),
            names.service,
            names.base
        ));
    }
    let mut docs = vec![policy_configmap(&names, policy_text)];
    docs.extend(rbac::documents(loaded, &names, opts));
    docs.push(job::job(loaded, &names, opts));
    Ok(docs)
}

/// Whether `s` is a DNS-1123 label, as Kubernetes wants namespaces and Job names.
pub fn dns_label(s: &str) -> bool {
    cutover_core::policy::validate::is_dns_label(s)
}

fn policy_configmap(names: &Names, text: &str) -> Document {
    let cm = ConfigMap {
        metadata: names.meta(&names.policy_configmap, &names.namespace),
        data: Some([(names.policy_key.clone(), text.to_string())].into()),
        ..Default::default()
    };
    Document::of(&["The policy, mounted read-only at /etc/cutover."], &cm)
}

/// The documents as one multi-document YAML stream, after a header saying how it was made.
pub fn render(header: &[String], docs: &[Document]) -> String {
    let mut out = String::new();
    for line in header {
        out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
    }
    for d in docs {
        out.push_str("---\n");
        for c in &d.comment {
            out.push_str(&format!("# {c}\n"));
        }
        out.push_str(&d.yaml);
        if !d.yaml.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
