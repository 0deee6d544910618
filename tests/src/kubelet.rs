//! A stand-in for the Job controller and the kubelet of one node, over the API emulation:
//! it runs a created Job's container as a local process and reports how it ended the way
//! the API server shows it.
//!
//! Every 100 ms, for each Job without an active pod that has not finished:
//! * it creates the Job's Pod (`<job>-<n>`, the template's labels, which carry `job-name`
//!   and `controller-uid`) and counts it `active`;
//! * it mounts the pod's ConfigMap volumes by writing their keys into a folder (a missing
//!   ConfigMap keeps the pod `Pending`, as a failed mount does), and an `emptyDir` as an
//!   empty folder;
//! * it runs the container: the image's `cutover` is the test binary, every argument under
//!   a volume's mount path points into that volume's folder, the container's `env` (values,
//!   and `fieldRef`s to the pod's labels) plus `KUBECONFIG` (the emulation's) and
//!   `HOSTNAME` (the pod's name);
//! * when it exits, the Pod gets `phase` (`Succeeded`/`Failed`) and
//!   `containerStatuses[0].state.terminated.exitCode` (128 + the signal if killed), and the
//!   Job what the Job controller writes: `succeeded` and the `SuccessCriteriaMet` and
//!   `Complete` conditions; or `failed`, then, by the Job's `podFailurePolicy` (an exit code
//!   `In` a `FailJob` rule's values) or its `backoffLimit`, the `FailureTarget` and `Failed`
//!   conditions with reason `PodFailurePolicy` or `BackoffLimitExceeded`; else a new pod.
//!
//! Every process it started is killed when it drops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::kube_api::KubeApi;
use crate::kube_api::workloads::rfc3339;
use crate::logs::Logs;
use crate::{TempDir, cutover_bin};

/// A running stand-in kubelet; stops (and kills its pods' processes) when dropped.
pub struct Kubelet {
    task: tokio::task::JoinHandle<()>,
    pods: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Its pods' output, shown if the test fails.
    pub logs: Arc<Logs>,
    _volumes: Arc<TempDir>,
}

struct Node {
    api: Arc<KubeApi>,
    kubeconfig: PathBuf,
    volumes: Arc<TempDir>,
    logs: Arc<Logs>,
    pods: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Per Job path: pods created so far, and whether one is running.
    jobs: BTreeMap<String, (u32, bool)>,
    /// Pods that ended: (job path, pod path, exit code).
    ended: Arc<Mutex<Vec<(String, String, i32)>>>,
}

impl Kubelet {
    /// Starts watching the emulation's Jobs; `kubeconfig` reaches the emulation.
    pub fn start(api: Arc<KubeApi>, kubeconfig: &Path) -> Kubelet {
        let volumes = Arc::new(TempDir::new("kubelet"));
        let logs = Arc::new(Logs::new("kubelet"));
        let pods = Arc::new(Mutex::new(Vec::new()));
        let mut node = Node {
            api,
            kubeconfig: kubeconfig.to_path_buf(),
            volumes: volumes.clone(),
            logs: logs.clone(),
            pods: pods.clone(),
            jobs: BTreeMap::new(),
            ended: Arc::new(Mutex::new(Vec::new())),
        };
        let task = tokio::spawn(async move {
            loop {
                node.sync();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Kubelet {
            task,
            pods,
            logs,
            _volumes: volumes,
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        // Each pod's task owns its process (kill_on_drop): aborting it kills the process.
        for p in self.pods.lock().unwrap().iter() {
            p.abort();
        }
    }
}

fn finished(job: &Value) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
}

fn condition(t: &str, reason: &str, message: &str) -> Value {
    let now = rfc3339(SystemTime::now());
    json!({"type": t, "status": "True", "reason": reason, "message": message,
           "lastProbeTime": now, "lastTransitionTime": now})
}

impl Node {
    fn sync(&mut self) {
        let ended: Vec<_> = std::mem::take(&mut *self.ended.lock().unwrap());
        for (job_path, pod_path, code) in ended {
            self.pod_ended(&job_path, &pod_path, code);
        }
        for (path, job) in self.api.objects_under("/apis/batch/v1/namespaces/") {
            if !path.contains("/jobs/") || finished(&job) {
                continue;
            }
            let (n, running) = self.jobs.get(&path).copied().unwrap_or((0, false));
            if running {
                continue;
            }
            if let Some(n) = self.start_pod(&path, &job, n) {
                self.jobs.insert(path, (n, true));
            }
        }
    }

    /// Creates and runs the Job's next pod; the pods created so far, if it started.
    fn start_pod(&mut self, job_path: &str, job: &Value, n: u32) -> Option<u32> {
        let ns = job["metadata"]["namespace"].as_str()?.to_string();
        let job_name = job["metadata"]["name"].as_str()?.to_string();
        let template = &job["spec"]["template"];
        let container = template["spec"]["containers"][0].clone();
        let pod_name = format!("{job_name}-{n}");
        // Mount the volumes: a ConfigMap's keys as files, an emptyDir as a folder.
        let root = self.volumes.path().join(&pod_name);
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for v in template["spec"]["volumes"].as_array().into_iter().flatten() {
            let vname = v["name"].as_str().unwrap_or("v");
            let dir = root.join(vname);
            std::fs::create_dir_all(&dir).ok()?;
            if let Some(cm) = v["configMap"]["name"].as_str() {
                let cm = self
                    .api
                    .object(&format!("/api/v1/namespaces/{ns}/configmaps/{cm}"))?;
                for (k, text) in cm["data"].as_object().into_iter().flatten() {
                    std::fs::write(dir.join(k), text.as_str().unwrap_or_default()).ok()?;
                }
            }
            for m in container["volumeMounts"].as_array().into_iter().flatten() {
                if m["name"] == vname {
                    mounts.push((m["mountPath"].as_str()?.to_string(), dir.clone()));
                }
            }
        }
        let labels = template["metadata"]["labels"].clone();
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                    "uid": job["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
            "spec": template["spec"]});
        if !self.api.create(pod) {
            return None;
        }
        let pod_path = format!("/api/v1/namespaces/{ns}/pods/{pod_name}");
        // The command: the image's `cutover` is the test binary; mount paths are folders.
        let args: Vec<String> = container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|a| {
                mounts
                    .iter()
                    .find(|(m, _)| a.starts_with(m.as_str()))
                    .map(|(m, dir)| format!("{}{}", dir.display(), &a[m.len()..]))
                    .unwrap_or_else(|| a.to_string())
            })
            .collect();
        let mut cmd = tokio::process::Command::new(cutover_bin());
        cmd.args(&args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOSTNAME", &pod_name)
            .kill_on_drop(true);
        for e in container["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default();
            let value = match e["value"].as_str() {
                Some(v) => Some(v.to_string()),
                None => e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .and_then(|f| f.strip_prefix("metadata.labels['"))
                    .and_then(|f| f.strip_suffix("']"))
                    .and_then(|l| labels[l].as_str().map(str::to_string)),
            };
            if let Some(v) = value {
                cmd.env(name, v);
            }
        }
        let (_, out, err) = self.logs.sink(&format!("pod {pod_name}"));
        cmd.stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("the kubelet cannot start {pod_name}: {e}"),
        };
        let started = rfc3339(SystemTime::now());
        self.api.set_status(
            &pod_path,
            json!({"phase": "Running", "startTime": started,
                   "containerStatuses": [{"name": "cutover", "ready": true, "restartCount": 0,
                       "image": container["image"], "state": {"running": {"startedAt": started}}}]}),
        );
        let mut status = job["status"].clone();
        status["active"] = json!(1);
        if status["startTime"].is_null() {
            status["startTime"] = json!(started);
        }
        self.api.set_status(job_path, status);
        let ended = self.ended.clone();
        let (jp, pp) = (job_path.to_string(), pod_path);
        self.pods.lock().unwrap().push(tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(s) => s.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(9)
                }),
                Err(_) => 137,
            };
            ended.lock().unwrap().push((jp, pp, code));
        }));
        Some(n + 1)
    }

    /// A pod's process exited with `code`: the Pod's and the Job's status, as the kubelet
    /// and the Job controller write them.
    fn pod_ended(&mut self, job_path: &str, pod_path: &str, code: i32) {
        let now = rfc3339(SystemTime::now());
        let Some(pod) = self.api.object(pod_path) else {
            return;
        };
        let mut ps = pod["status"].clone();
        let started = ps["containerStatuses"][0]["state"]["running"]["startedAt"].clone();
        ps["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
        ps["containerStatuses"][0]["ready"] = json!(false);
        ps["containerStatuses"][0]["state"] = json!({"terminated": {
            "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
            "startedAt": started, "finishedAt": now, "containerID": format!("emulated://{pod_path}")}});
        self.api.set_status(pod_path, ps);
        let Some(job) = self.api.object(job_path) else {
            return;
        };
        if let Some(e) = self.jobs.get_mut(job_path) {
            e.1 = false;
        }
        let mut st = job["status"].clone();
        st["active"] = json!(0);
        let mut conditions: Vec<Value> = st["conditions"].as_array().cloned().unwrap_or_default();
        if code == 0 {
            st["succeeded"] = json!(st["succeeded"].as_i64().unwrap_or(0) + 1);
            st["completionTime"] = json!(now);
            conditions.push(condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ));
            conditions.push(condition(
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ));
        } else {
            let failed = st["failed"].as_i64().unwrap_or(0) + 1;
            st["failed"] = json!(failed);
            let rule = job["spec"]["podFailurePolicy"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .position(|r| {
                    r["action"] == "FailJob"
                        && r["onExitCodes"]["operator"] == "In"
                        && r["onExitCodes"]["values"]
                            .as_array()
                            .is_some_and(|v| v.iter().any(|x| x.as_i64() == Some(code.into())))
                });
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
            let stop = match rule {
                Some(i) => Some((
                    "PodFailurePolicy",
                    format!(
                        "Container cutover for pod {ns}/{pod_name} failed with exit code {code} matching FailJob rule at index {i}"
                    ),
                )),
                None if failed > job["spec"]["backoffLimit"].as_i64().unwrap_or(6) => Some((
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit".to_string(),
                )),
                None => None,
            };
            if let Some((reason, message)) = stop {
                conditions.push(condition("FailureTarget", reason, &message));
                conditions.push(condition("Failed", reason, &message));
            }
        }
        st["conditions"] = json!(conditions);
        self.api.set_status(job_path, st);
    }
}
