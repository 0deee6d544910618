//! The Kubernetes executor: each service's cutover is one `batch/v1` Job made from the
//! fleet's `kubernetes:` template, named from the fleet run so that a restarted
//! orchestrator finds (adopts) the Job it created before and never creates it twice. The
//! Jobs are labelled with the fleet, its run and the service, and owned by the fleet's
//! state ConfigMap (deleting the fleet's state garbage-collects them). A Job's outcome is
//! its status (`Complete`/`Failed`) and its pod's exit code; the reason is the run's record
//! in the service's state ConfigMap, where an abort is posted as an operator command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use cutover_backends::objects::{Cluster, Created, ObjectRef, object};
use cutover_core::fleet::{FleetService, KubernetesExecutor as Template};
use cutover_core::lock::stable_hash;
use cutover_core::run::{Action, Command, RunState};
use cutover_core::store::StateStore;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, Pod, PodSpec, PodTemplateSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::executor::{Ended, Executor};
use crate::manifests::job::{
    BACKOFF_LIMIT, Deadline, POLICY_DIR, RUN_ID_ENV, pod_failure_policy, run_container_security,
    run_pod_security, run_resources,
};

/// The label of the fleet a Job belongs to.
pub const FLEET_LABEL: &str = "cutover.dev/fleet";
/// The label of the fleet run a Job belongs to (its run id, hashed to a label value).
pub const FLEET_RUN_LABEL: &str = "cutover.dev/fleet-run";
/// The label of the service a Job cuts over.
pub const SERVICE_LABEL: &str = "cutover.dev/service";

/// The ConfigMap that keeps a service's run state (and its commands): `cutover-<service>-run`.
pub fn run_configmap(service: &str) -> String {
    format!("cutover-{service}-run")
}

/// The ConfigMap that keeps a fleet's state: `cutover-fleet-<fleet>`; its Lease has the
/// same name.
pub fn fleet_configmap(fleet: &str) -> String {
    format!("cutover-fleet-{fleet}")
}

/// A DNS label of at most `max` characters from `s`.
fn label(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    clean.trim_matches('-').to_string()
}

/// The short hash of a fleet run id (a label value and the tail of its Jobs' names).
pub fn run_hash(fleet_run: &str) -> String {
    format!("{:08x}", stable_hash(fleet_run) as u32)
}

/// The name of `service`'s Job in fleet run `fleet_run`: `cutover-<fleet>-<service>-<hash>`,
/// at most 63 characters, the same every time it is asked (a restarted orchestrator adopts
/// the Job rather than creating another).
pub fn job_name(fleet: &str, service: &str, fleet_run: &str) -> String {
    // The run and the service: two services whose names are cut to the same prefix still
    // get two Jobs (and an adopted Job is checked to be this service's: `cutover.dev/service`).
    let hash = run_hash(&format!("{fleet_run}/{service}"));
    // "cutover-" 8 + "-" 1 + "-" 1 + hash 8 = 18: 45 left for the fleet and the service.
    let f = label(fleet, 15);
    let s = label(service, 44 - f.len());
    format!("cutover-{f}-{s}-{hash}")
}

/// What a started Job is: its name and its run's id.
#[derive(Debug, Clone)]
struct Started {
    job: String,
    run_id: String,
}

/// Runs each service's cutover as a Kubernetes Job.
pub struct KubernetesExecutor {
    cluster: Cluster,
    template: Template,
    fleet: String,
    fleet_run: String,
    /// The fleet's state ConfigMap (name, uid): the Jobs' owner.
    owner: Option<(String, String)>,
    /// Extra arguments of every Job's `cutover run` (e.g. `--lock-ttl`).
    args: Vec<String>,
    /// `cutover rollback` runs here: this program and how it reaches the cluster.
    bin: PathBuf,
    connect: Vec<String>,
    started: Mutex<BTreeMap<String, Started>>,
}

/// How a [`KubernetesExecutor`] is set up.
pub struct Setup {
    /// The connection.
    pub cluster: Cluster,
    /// The fleet's `kubernetes:` template.
    pub template: Template,
    /// The fleet's name.
    pub fleet: String,
    /// The fleet run's id.
    pub fleet_run: String,
    /// The fleet's state ConfigMap (name, uid), owner of the Jobs.
    pub owner: Option<(String, String)>,
    /// Extra arguments of every Job's `cutover run`.
    pub args: Vec<String>,
    /// This program, for `cutover rollback`.
    pub bin: PathBuf,
    /// `--kubeconfig K --context C`, as given to the orchestrator, for `cutover rollback`.
    pub connect: Vec<String>,
}

impl KubernetesExecutor {
    /// An executor from its setup.
    pub fn new(setup: Setup) -> KubernetesExecutor {
        KubernetesExecutor {
            cluster: setup.cluster,
            template: setup.template,
            fleet: setup.fleet,
            fleet_run: setup.fleet_run,
            owner: setup.owner,
            args: setup.args,
            bin: setup.bin,
            connect: setup.connect,
            started: Mutex::new(BTreeMap::new()),
        }
    }

    fn ns(&self) -> &str {
        &self.template.namespace
    }

    fn jobs(&self, name: &str) -> ObjectRef {
        object("batch", "v1", "jobs", "Job", self.ns(), name)
    }

    fn store(&self, service: &str) -> cutover_backends::state::ConfigMapStore {
        self.cluster.run_store(self.ns(), &run_configmap(service))
    }

    async fn record(&self, service: &str) -> Option<RunState> {
        self.store(service).load().await.ok().flatten()
    }

    /// The Job of `service`, as it is created.
    pub fn job(&self, s: &FleetService, run_id: &str) -> Job {
        let name = job_name(&self.fleet, &s.name, &self.fleet_run);
        let labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "cutover".to_string()),
            (
                "app.kubernetes.io/managed-by".to_string(),
                "cutover".to_string(),
            ),
            (FLEET_LABEL.to_string(), label(&self.fleet, 63)),
            (FLEET_RUN_LABEL.to_string(), run_hash(&self.fleet_run)),
            (SERVICE_LABEL.to_string(), label(&s.name, 63)),
        ]);
        let owner_references = self.owner.as_ref().map(|(cm, uid)| {
            vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: cm.clone(),
                uid: uid.clone(),
                ..Default::default()
            }]
        });
        let mut args = vec![
            "run".to_string(),
            format!("{POLICY_DIR}/policy.yaml"),
            "--state-configmap".to_string(),
            format!("{}/{}", self.ns(), run_configmap(&s.name)),
            "--log-format".to_string(),
            "json".to_string(),
        ];
        args.extend(self.args.iter().cloned());
        let env = |k: &str, v: &str| EnvVar {
            name: k.into(),
            value: Some(v.into()),
            ..Default::default()
        };

        let container = Container {
            name: "cutover".into(),
            image: Some(self.template.image.clone()),
            args: Some(args),
            env: Some(vec![env(RUN_ID_ENV, run_id), env("CUTOVER_ACTOR", "fleet")]),
            // As `cutover manifests` sizes and hardens a run's Job.
            resources: Some(run_resources()),
            security_context: Some(run_container_security()),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "policy".into(),
                    mount_path: POLICY_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: "scratch".into(),
                    mount_path: "/tmp".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        Job {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.ns().to_string()),
                labels: Some(labels.clone()),
                owner_references,
                ..Default::default()
            },
            spec: Some(JobSpec {
                backoff_limit: Some(BACKOFF_LIMIT),
                // The plan's worst case, preflight, the rollback's retries and one restart.
                active_deadline_seconds: Some(Deadline::of(&s.policy).seconds()),
                pod_failure_policy: Some(pod_failure_policy()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        service_account_name: Some(self.template.service_account.clone()),
                        restart_policy: Some("Never".into()),
                        termination_grace_period_seconds: Some(30),
                        security_context: Some(run_pod_security()),
                        containers: vec![container],
                        volumes: Some(vec![
                            Volume {
                                name: "policy".into(),
                                config_map: Some(ConfigMapVolumeSource {
                                    name: self
                                        .template
                                        .policy_configmap
                                        .replace("{service}", &s.name),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                            Volume {
                                name: "scratch".into(),
                                empty_dir: Some(EmptyDirVolumeSource::default()),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    /// How the Job `started` ended, if it has: from its status, its pod's exit code and
    /// the run's record.
    async fn outcome(&self, service: &str, started: &Started) -> Option<Ended> {
        let v = match self.cluster.get(&self.jobs(&started.job)).await {
            Ok(Some(v)) => v,
            // Deleted under us: what the run recorded, else nobody knows where its traffic is.
            Ok(None) => {
                let r = self
                    .record(service)
                    .await
                    .filter(|r| r.run_id == started.run_id && r.phase.is_terminal());
                return Some(match r.and_then(|r| r.outcome) {
                    Some(o) => Ended {
                        service: service.into(),
                        exit: o.exit_code(),
                        reason: o.reason,
                    },
                    None => Ended {
                        service: service.into(),
                        exit: 10,
                        reason: format!(
                            "Job {} was deleted before its run recorded an outcome: traffic may be at any weight",
                            started.job
                        ),
                    },
                });
            }
            // The API server unreachable for a moment: asked again at the next poll.
            Err(_) => return None,
        };
        let job: Job = serde_json::from_value(v).ok()?;
        let status = job.status.unwrap_or_default();
        let condition = |t: &str| {
            status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == t && c.status == "True")
                .cloned()
        };
        let complete = condition("Complete").is_some() || status.succeeded.unwrap_or(0) > 0;
        let failed = condition("Failed");
        if !complete && failed.is_none() {
            return None;
        }
        // A pod still active or terminating (a deadline's grace period) may still write.
        if status.active.unwrap_or(0) > 0 || status.terminating.unwrap_or(0) > 0 {
            return None;
        }
        let record = self
            .record(service)
            .await
            .filter(|r| r.run_id == started.run_id && r.phase.is_terminal());
        let reason = record
            .as_ref()
            .and_then(|r| r.outcome.as_ref())
            .map(|o| o.reason.clone());
        if complete {
            return Some(Ended {
                service: service.into(),
                exit: 0,
                reason: reason.unwrap_or_else(|| format!("Job {} completed", started.job)),
            });
        }
        // The run's own exit codes only (a signal, an OOM kill or a crash says nothing of
        // where traffic is): else the recorded outcome; else a page, below.
        let exit = self
            .exit_code(&started.job)
            .await
            .filter(|c| matches!(c, 0..=5 | 10))
            .or_else(|| {
                record
                    .as_ref()
                    .and_then(|r| r.outcome.as_ref())
                    .map(|o| o.exit_code())
            });
        let failed = failed.unwrap_or_default();
        let why = format!(
            "Job {} failed ({}: {})",
            started.job,
            failed.reason.unwrap_or_default(),
            failed.message.unwrap_or_default()
        );
        Some(match exit {
            Some(exit) => Ended {
                service: service.into(),
                exit,
                reason: reason.unwrap_or(why),
            },
            // No pod said how it ended and no outcome is recorded: the traffic may be at
            // any stage of the plan. Page.
            None => Ended {
                service: service.into(),
                exit: 10,
                reason: format!(
                    "{why}; no exit code and no recorded outcome: traffic may be at any weight"
                ),
            },
        })
    }

    /// The exit code of the Job's last terminated pod (`job-name=<job>`).
    async fn exit_code(&self, job: &str) -> Option<i32> {
        let pods = self
            .cluster
            .list(
                &object("", "v1", "pods", "Pod", self.ns(), ""),
                &format!("job-name={job}"),
            )
            .await
            .ok()?;
        let mut ended: Vec<(String, i32)> = pods
            .into_iter()
            .filter_map(|p| serde_json::from_value::<Pod>(p).ok())
            .filter_map(|p| {
                let t = p
                    .status?
                    .container_statuses?
                    .into_iter()
                    .find(|c| c.name == "cutover")?
                    .state?
                    .terminated?;
                let at = t.finished_at.map(|f| f.0.to_string()).unwrap_or_default();
                Some((at, t.exit_code))
            })
            .collect();
        ended.sort();
        ended.last().map(|(_, code)| *code)
    }
}

#[async_trait]
impl Executor for KubernetesExecutor {
    async fn start(&self, s: &FleetService, run_id: &str) -> Result<(), String> {
        let job = self.job(s, run_id);
        let name = job.metadata.name.clone().unwrap_or_default();
        let body = serde_json::to_value(&job).map_err(|e| e.to_string())?;
        match self.cluster.create(&self.jobs(&name), &body).await {
            Ok(Created::New(_)) => {}
            Ok(Created::Exists) => {
                tracing::info!(job = %name, "the Job exists (created by an earlier orchestrator): adopted");
            }
            Err(e) => return Err(format!("cannot create Job {}/{name}: {e}", self.ns())),
        }
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                s.name.clone(),
                Started {
                    job: name,
                    run_id: run_id.to_string(),
                },
            );
        Ok(())
    }

    async fn poll(&self) -> Vec<Ended> {
        let started: Vec<(String, Started)> = self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let mut ended = Vec::new();
        for (service, st) in started {
            if let Some(e) = self.outcome(&service, &st).await {
                self.started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&service);
                ended.push(e);
            }
        }
        ended
    }

    async fn abort(&self, s: &FleetService) -> Result<(), String> {
        let run_id = self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&s.name)
            .map(|st| st.run_id.clone())
            .ok_or_else(|| format!("{} has no Job of this orchestrator", s.name))?;
        let at = SystemTime::now();
        let nanos = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let command = Command {
            id: format!("abort-{nanos}-{}", std::process::id()),
            run_id,
            action: Action::Abort,
            by: format!("fleet {}", self.fleet),
            reason: Some("the fleet is aborted".into()),
            at,
        };
        self.store(&s.name)
            .post_command(&command)
            .await
            .map_err(|e| e.to_string())
    }

    async fn rollback(&self, s: &FleetService) -> Result<String, String> {
        let out = tokio::process::Command::new(&self.bin)
            .arg("rollback")
            .arg(&s.policy_path)
            .arg("--state-configmap")
            .arg(format!("{}/{}", self.ns(), run_configmap(&s.name)))
            .args(&self.connect)
            .args(["--watch", "5s"])
            .env("CUTOVER_ACTOR", "fleet")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("{}: cannot run `cutover rollback`: {e}", s.name))?;
        match out.status.code() {
            Some(0) => Ok(format!("{}: all traffic on DR, verified", s.name)),
            c => {
                let text = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                Err(format!(
                    "{}: `cutover rollback` exited {c:?}: {}",
                    s.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ))
            }
        }
    }

    async fn finished(&self, s: &FleetService, run_id: &str) -> Option<Ended> {
        let record = self.record(&s.name).await.filter(|r| r.run_id == run_id);
        if let Some(o) = record.and_then(|r| r.outcome.filter(|_| r.phase.is_terminal())) {
            return Some(Ended {
                service: s.name.clone(),
                exit: o.exit_code(),
                reason: o.reason,
            });
        }
        // No outcome recorded: the Job may still have ended (a refused or crashed run). A
        // Job not created yet has not ended: the driver starts it.
        let started = Started {
            job: job_name(&self.fleet, &s.name, &self.fleet_run),
            run_id: run_id.to_string(),
        };
        match self.cluster.get(&self.jobs(&started.job)).await {
            Ok(Some(_)) => self.outcome(&s.name, &started).await,
            _ => None,
        }
    }

    fn describe(&self) -> String {
        format!(
            "Kubernetes Jobs in namespace {} (image {})",
            self.ns(),
            self.template.image
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_dns_labels_stable_per_fleet_run_and_distinct_per_service() {
        let a = job_name("site", "checkout", "site-1");
        assert_eq!(a, job_name("site", "checkout", "site-1"));
        assert_ne!(a, job_name("site", "checkout", "site-2"));
        assert_ne!(a, job_name("site", "payments", "site-1"));
        assert!(a.starts_with("cutover-site-checkout-"), "{a}");
        let long = job_name(&"f".repeat(80), &"s_v.c".repeat(30), "r");
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{long}"
        );
    }
}
