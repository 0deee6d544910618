//! The Job that runs one policy: its run identity from the downward API, a hardened
//! securityContext, resources from the measured footprint, a deadline from the plan's worst
//! case, and a failure policy that never retries a decided outcome.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cutover_core::policy::LoadedPolicy;
use cutover_core::policy::backend::Backend;
use cutover_core::policy::model::RollbackMode;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Document, Names, Options, worst_case};

/// The user and group of the image (distroless `nonroot`).
pub const NONROOT: i64 = 65532;
/// The port of `/metrics`.
pub const METRICS_PORT: i32 = 9102;
/// Retries of a pod that crashed or was killed (not of a decided outcome).
pub const BACKOFF_LIMIT: i32 = 3;
/// Where the policy ConfigMap is mounted.
pub const POLICY_DIR: &str = "/etc/cutover";
/// The environment variable of the run identity (`--run-id`).
pub const RUN_ID_ENV: &str = "CUTOVER_RUN_ID";
/// The label Kubernetes puts on a Job's pods with the Job's uid: the same in every retried
/// pod, so a restarted pod is the same run.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

/// Resources from the measured footprint: peak RSS of the release binary, 10.4–10.8 MiB in
/// `/usr/bin/time -v target/release/cutover demo --scenario S --speed 0` (error-spike,
/// healthy, latency-regression; 2026-11-26) and 12.9 MiB in a real run against Prometheus
/// (shared/VERIFIED.md, 2026-11-23); the larger, rounded up, is [`MEASURED_PEAK_RSS_MIB`].
/// The request is about twice that, the limit ten times (headroom for a large Prometheus
/// answer or a slow API server); the run sleeps between analyses, so a small CPU request
/// and no CPU limit.
pub const MEASURED_PEAK_RSS_MIB: u32 = 13;
/// Memory request, MiB.
pub const MEMORY_REQUEST_MIB: u32 = 32;
/// Memory limit, MiB.
pub const MEMORY_LIMIT_MIB: u32 = 128;
/// CPU request, millicores.
pub const CPU_REQUEST_MILLI: u32 = 50;

/// The lock's default time to live: a restarted pod waits this long for its predecessor's.
const LOCK_TTL: Duration = Duration::from_secs(30);

/// The Job's `activeDeadlineSeconds`, and the terms it adds up (for the comment).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// The run itself: the plan's worst case, or the policy's `deadline:` if shorter.
    pub run: Duration,
    /// Preflight: every check and every gate's DR query, each up to the Prometheus timeout.
    pub preflight: Duration,
    /// The rollback: every attempt's backoff (and, stepped, every step).
    pub rollback: Duration,
    /// One restarted pod: the lock's TTL and a re-bake of the longest stage.
    pub restart: Duration,
}

impl Deadline {
    /// The deadline of a loaded policy.
    pub fn of(loaded: &LoadedPolicy) -> Deadline {
        let policy = &loaded.policy;
        let mut run = worst_case(loaded);
        if let Some(d) = &policy.deadline {
            run = run.min(d.get());
        }
        let queries = (policy.preflight.len() + policy.gates.len() + 1) as u32;
        let preflight = policy.prometheus.timeout.get() * queries;
        let rb = &loaded.plan.rollback;
        let mut rollback = Duration::ZERO;
        let mut delay = rb.retry_interval.get();
        for _ in 0..rb.max_attempts {
            rollback += delay;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        if rb.mode == RollbackMode::Stepped {
            rollback += rb.step_interval.get() * loaded.plan.stages.len() as u32;
        }
        let longest = loaded
            .plan
            .stages
            .iter()
            .map(|s| s.max_duration + s.interval)
            .max()
            .unwrap_or_default();
        Deadline {
            run,
            preflight,
            rollback,
            restart: LOCK_TTL + longest,
        }
    }

    /// The sum, in whole seconds.
    pub fn seconds(&self) -> i64 {
        (self.run + self.preflight + self.rollback + self.restart).as_secs() as i64
    }
}

fn quantity(s: String) -> Quantity {
    Quantity(s)
}

/// The failure policy: an eviction or preemption is retried without counting; every exit
/// code of a decided outcome (1 rolled back, 2 bad policy, 3 preflight failed, 4 aborted,
/// 5 held, 10 rollback failed: page) fails the Job at once; anything else (a crash, OOM, a
/// kill) is retried up to `backoffLimit` and resumes the recorded stage.
pub fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                }]),
                ..Default::default()
            },
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some("cutover".into()),
                    operator: "In".into(),
                    values: vec![1, 2, 3, 4, 5, 10],
                }),
                ..Default::default()
            },
        ],
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// The folders of the files the readiness checks read, each with the Secret that holds
/// them: `(folder, secret name)`.
pub fn secret_mounts(loaded: &LoadedPolicy, names: &Names) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for f in loaded.plan.readiness.files() {
        let dir = f
            .parent()
            .unwrap_or(Path::new("/"))
            .to_string_lossy()
            .to_string();
        if out.iter().any(|(d, _)| *d == dir) {
            continue;
        }
        let leaf: String = Path::new(&dir)
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_else(|| "secret".into())
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        out.push((dir, format!("{}-{}", names.base, leaf.trim_matches('-'))));
    }
    out
}

/// The requests and limits of a run's container, from its measured footprint (`cutover
/// manifests`' Job and the fleet's Jobs alike).
pub fn run_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), quantity(format!("{CPU_REQUEST_MILLI}m"))),
            ("memory".into(), quantity(format!("{MEMORY_REQUEST_MIB}Mi"))),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".into(),
            quantity(format!("{MEMORY_LIMIT_MIB}Mi")),
        )])),
        ..Default::default()
    }
}

/// A run's container: non-root, read-only root, no privilege escalation, no capabilities,
/// the runtime's seccomp profile.
pub fn run_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT),
        run_as_group: Some(NONROOT),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// A run's pod: uid and gid 65532, the runtime's seccomp profile.
pub fn run_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT),
        run_as_group: Some(NONROOT),
        fs_group: Some(NONROOT),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

/// The Job document.
pub fn job(loaded: &LoadedPolicy, names: &Names, opts: &Options) -> Document {
    let deadline = Deadline::of(loaded);
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "cutover".to_string()),
        ("app.kubernetes.io/instance".to_string(), names.base.clone()),
        ("cutover.dev/service".to_string(), names.service.clone()),
    ]);
    let mut volumes = vec![
        Volume {
            name: "policy".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.policy_configmap.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(quantity("64Mi".into())),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        mount("policy", POLICY_DIR, true),
        mount("scratch", "/tmp", false),
    ];
    if let Backend::File(f) = &loaded.backend {
        let dir = f.path.parent().unwrap_or(Path::new("/"));
        volumes.push(Volume {
            name: "weights".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: format!("{}-weights", names.base),
                read_only: None,
            }),
            ..Default::default()
        });
        mounts.push(mount("weights", &dir.to_string_lossy(), false));
    }
    // The readiness checks' files (connection strings, CA bundles): one Secret per folder,
    // named `<base>-<folder>`, mounted read-only where the policy reads them.
    for (k, (dir, secret)) in secret_mounts(loaded, names).into_iter().enumerate() {
        let name = format!("secret-{k}");
        volumes.push(Volume {
            name: name.clone(),
            secret: Some(k8s_openapi::api::core::v1::SecretVolumeSource {
                secret_name: Some(secret),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount(&name, &dir, true));
    }
    let container = Container {
        name: "cutover".into(),
        image: Some(opts.image.clone()),
        args: Some(vec![
            "run".into(),
            format!("{POLICY_DIR}/{}", names.policy_key),
            format!(
                "--state-configmap={}/{}",
                names.namespace, names.state_configmap
            ),
            "--log-format=json".into(),
            format!("--metrics-addr=0.0.0.0:{METRICS_PORT}"),
            "--report=/tmp/report".into(),
        ]),
        env: Some(vec![EnvVar {
            name: RUN_ID_ENV.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.labels['{CONTROLLER_UID_LABEL}']"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(run_resources()),
        security_context: Some(run_container_security()),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(names.base.clone()),
        restart_policy: Some("Never".into()),
        // Time to persist the state and hold (on_signal) on SIGTERM.
        termination_grace_period_seconds: Some(30),
        security_context: Some(run_pod_security()),
        containers: vec![container],
        volumes: Some(volumes),
        ..Default::default()
    };
    let job = Job {
        metadata: names.meta(&names.base, &names.namespace),
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            active_deadline_seconds: Some(deadline.seconds()),
            pod_failure_policy: Some(pod_failure_policy()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([
                        ("prometheus.io/scrape".into(), "true".into()),
                        ("prometheus.io/port".into(), METRICS_PORT.to_string()),
                    ])),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    };
    let d = |x: Duration| cutover_core::run::fmt_d(x);
    let why = format!(
        "activeDeadlineSeconds {} = run {} (`cutover plan`'s worst case) + preflight {} + rollback {} + one restart {} (lock TTL + the longest stage).",
        deadline.seconds(),
        d(deadline.run),
        d(deadline.preflight),
        d(deadline.rollback),
        d(deadline.restart)
    );
    let wait = format!(
        "Wait and read the outcome: kubectl -n {0} wait --for=condition=complete --timeout={1}s job/{2} || kubectl -n {0} get pod -l job-name={2} -o jsonpath='{{.items[-1].status.containerStatuses[0].state.terminated.exitCode}}'",
        names.namespace,
        deadline.seconds(),
        names.base
    );
    let mut comment = vec![
        "The run. Exit codes: 0 promoted, 1 rolled back, 2 bad policy, 3 preflight failed,"
            .to_string(),
        "4 aborted, 5 held, 10 rollback could not be applied (page now). A decided outcome fails"
            .into(),
        "the Job at once (podFailurePolicy); a crash or kill is retried and resumes the stage."
            .into(),
        why,
        format!(
            "Resources: peak RSS measured at {MEASURED_PEAK_RSS_MIB} MiB (deploy/README.md says how)."
        ),
        wait,
    ];
    if let Backend::File(f) = &loaded.backend {
        comment.push(format!(
            "The file backend's weights ({}) live on PersistentVolumeClaim {}-weights, which you provide: the proxy that reads them mounts it too.",
            f.path.display(),
            names.base
        ));
    }
    let files = loaded.plan.readiness.files();
    for (dir, secret) in secret_mounts(loaded, names) {
        let keys: Vec<String> = files
            .iter()
            .filter(|f| {
                f.parent()
                    .is_some_and(|p| p.to_string_lossy() == dir.as_str())
            })
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().to_string()))
            .collect();
        comment.push(format!(
            "Readiness checks read {dir}/{{{}}}: create Secret {secret} with those keys in namespace {} (not generated: it holds credentials).",
            keys.join(","),
            names.namespace
        ));
    }
    let refs: Vec<&str> = comment.iter().map(String::as_str).collect();
    Document::of(&refs, &job)
}
