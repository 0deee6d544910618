//! A site failed back on Kubernetes, end to end: `cutover fleet run --executor kubernetes`
//! against the API emulation (`tests/src/kube_api.rs`) with kube-rs's real client, each
//! service's cutover a `batch/v1` Job run by the stand-in kubelet (`tests/src/kubelet.rs`)
//! as a local `cutover run` process, each service an HTTPRoute whose weights its own
//! workload exporter follows, one real Prometheus scraping them all.
//!
//! Seven services in three layers (`a0 a1 | b0 b1 b2 | c0 c1`, `b1` after `b0`),
//! `max_parallel: 2`. The tests share the two cores one at a time (a lock), each with its
//! own cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cutover_tests::env::Env;
use cutover_tests::exporter::{Behaviour, Exporter};
use cutover_tests::kube_api::KubeApi;
use cutover_tests::kubelet::Kubelet;
use cutover_tests::wait_until;
use serde_json::{Value, json};

const SERVICES: [(&str, u32); 7] = [
    ("a0", 0),
    ("a1", 0),
    ("b0", 1),
    ("b1", 1),
    ("b2", 1),
    ("c0", 2),
    ("c1", 2),
];
const NS: &str = "cutover";
const WEIGHTS: [&str; 2] = [
    "/spec/rules/0/backendRefs/0/weight",
    "/spec/rules/0/backendRefs/1/weight",
];
const LIMIT: Duration = Duration::from_secs(600);

/// One test at a time: each starts eight workloads, a Prometheus and up to two cutovers.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn route_path(svc: &str) -> String {
    format!("/apis/gateway.networking.k8s.io/v1/namespaces/production/httproutes/{svc}")
}

fn http_route(svc: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": svc, "namespace": "production", "labels": {"app": svc}},
        "spec": {"parentRefs": [{"name": "public", "namespace": "gateways"}],
            "rules": [{"name": "api", "backendRefs": [
                {"name": format!("{svc}-primary"), "port": 8080, "weight": 0},
                {"name": format!("{svc}-dr"), "port": 8080, "weight": 100}]}]}})
}

/// The site: the API emulation with an HTTPRoute and a policy ConfigMap per service, the
/// kubelet, an exporter per service following its route, and the Prometheus.
struct Site {
    env: Env,
    api: Arc<KubeApi>,
    exporters: BTreeMap<&'static str, Exporter>,
    followers: Vec<tokio::task::JoinHandle<()>>,
    kubelet: Option<Kubelet>,
    _weights: cutover_tests::TempDir,
}

impl Drop for Site {
    fn drop(&mut self) {
        for f in &self.followers {
            f.abort();
        }
        if std::thread::panicking()
            && let Some(k) = &self.kubelet
        {
            k.logs.print();
        }
    }
}

impl Site {
    async fn start(test: &str) -> Site {
        let api =
            Arc::new(KubeApi::start(SERVICES.iter().map(|(s, _)| http_route(s)).collect()).await);
        let weights = cutover_tests::TempDir::new(&format!("{test}-weights"));
        let mut exporters = BTreeMap::new();
        let mut followers = Vec::new();
        let mut builder = Env::builder(test).rps(100.0);
        for (svc, _) in SERVICES {
            let file = weights.path().join(format!("{svc}.json"));
            std::fs::write(&file, cutover_tests::ALL_ON_DR).unwrap();
            let e = Exporter::start_for(svc, file.clone(), 100.0).await;
            builder = builder.scrape(e.target());
            exporters.insert(svc, e);
            // The gateway follows the route's weights.
            let (a, path) = (api.clone(), route_path(svc));
            followers.push(tokio::spawn(async move {
                loop {
                    if let Some(o) = a.object(&path) {
                        let w = |p: &str| o.pointer(p).and_then(Value::as_u64).unwrap_or(0);
                        let (p, d) = (w(WEIGHTS[0]), w(WEIGHTS[1]));
                        if let Some(pp) = (p * 100).checked_div(p + d) {
                            let text = format!("{{\"primary\":{pp},\"dr\":{}}}", 100 - pp);
                            let _ = std::fs::write(&file, text);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        let env = builder
            .ready_when(&format!(
                "count(rate(http_requests_total{{site=\"dr\",status=\"200\"}}[8s]) > 0) >= {}",
                SERVICES.len() + 1
            ))
            .start()
            .await;
        api.kubeconfig(&env.path("kubeconfig"));
        let kubelet = Kubelet::start(api.clone(), &env.path("kubeconfig"));
        Site {
            env,
            api,
            exporters,
            followers,
            kubelet: Some(kubelet),
            _weights: weights,
        }
    }

    /// The fleet file (`header` added), each service's policy written beside it and into
    /// its policy ConfigMap, as `kubectl create configmap --from-file` would.
    fn fleet(
        &self,
        header: &str,
        services: &[(&str, u32)],
        extra: &dyn Fn(&str) -> String,
    ) -> PathBuf {
        let mut text = format!(
            "fleet: site\nmax_parallel: 2\n{header}\nkubernetes:\n  namespace: {NS}\n  image: ghcr.io/example/cutover:test\n  service_account: cutover-run\nservices:\n"
        );
        for (svc, layer) in services {
            let policy = self
                .env
                .policy()
                .service(svc)
                .at(self.env.path(&format!("{svc}.yaml")))
                .backend(&format!(
                    "  gateway_api:\n    namespace: production\n    http_route: {svc}\n    rule: api\n    primary: {{ name: {svc}-primary, port: 8080 }}\n    dr: {{ name: {svc}-dr, port: 8080 }}"
                ))
                .stages(&[50, 100])
                .extra(&extra(svc))
                .write();
            self.api
                .insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cutover-{svc}-policy"), "namespace": NS},
                "data": {"policy.yaml": std::fs::read_to_string(&policy).unwrap()}}));
            let after = if *svc == "b1" { "[b0]" } else { "[]" };
            text.push_str(&format!(
                "  - {{ name: {svc}, policy: {}, layer: {layer}, after: {after} }}\n",
                policy.display()
            ));
        }
        let p = self.env.path("fleet.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `cutover fleet SUB FLEET --executor kubernetes --kubeconfig K`.
    fn fleet_cmd(&self, sub: &str, fleet: &PathBuf) -> cutover_tests::cli::Cutover<'_> {
        self.env
            .cutover(["fleet", sub])
            .arg(fleet)
            .args([
                "--executor",
                "kubernetes",
                "--lease-ttl",
                "6s",
                "--kubeconfig",
            ])
            .arg(self.env.path("kubeconfig"))
    }

    fn primary(&self, svc: &str) -> u64 {
        self.api
            .object(&route_path(svc))
            .and_then(|o| o.pointer(WEIGHTS[0]).and_then(Value::as_u64))
            .unwrap()
    }

    fn jobs(&self) -> Vec<Value> {
        self.api
            .objects_under(&format!("/apis/batch/v1/namespaces/{NS}/jobs/"))
            .into_iter()
            .map(|(_, j)| j)
            .collect()
    }

    /// The Jobs of each service.
    fn jobs_by_service(&self) -> BTreeMap<String, usize> {
        let mut by = BTreeMap::new();
        for j in self.jobs() {
            let s = j["metadata"]["labels"]["cutover.dev/service"]
                .as_str()
                .unwrap()
                .to_string();
            *by.entry(s).or_insert(0) += 1;
        }
        by
    }

    /// A service's run record (its state ConfigMap's `state.json`).
    fn record(&self, svc: &str) -> Option<Value> {
        let cm = self.api.object(&format!(
            "/api/v1/namespaces/{NS}/configmaps/cutover-{svc}-run"
        ))?;
        serde_json::from_str(cm["data"]["state.json"].as_str()?).ok()
    }

    /// The fleet's state (its ConfigMap's `fleet.json`).
    fn fleet_state(&self) -> Value {
        let cm = self
            .api
            .object(&format!(
                "/api/v1/namespaces/{NS}/configmaps/cutover-fleet-site"
            ))
            .expect("the fleet's state ConfigMap");
        serde_json::from_str(cm["data"]["fleet.json"].as_str().unwrap()).unwrap()
    }

    /// Counts the Jobs running at once, every 100 ms, until the handle is dropped.
    fn watch_active(
        &self,
    ) -> (
        Arc<std::sync::atomic::AtomicUsize>,
        tokio::task::JoinHandle<()>,
    ) {
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (m, api) = (most.clone(), self.api.clone());
        let task = tokio::spawn(async move {
            loop {
                let active = api
                    .objects_under(&format!("/apis/batch/v1/namespaces/{NS}/jobs/"))
                    .iter()
                    .filter(|(_, j)| j["status"]["active"].as_i64() == Some(1))
                    .count();
                m.fetch_max(active, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (most, task)
    }
}

fn time(v: &Value) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(v["secs_since_epoch"].as_u64().unwrap())
        + Duration::from_nanos(v["nanos_since_epoch"].as_u64().unwrap_or(0))
}

fn layer(svc: &str) -> u32 {
    SERVICES.iter().find(|(s, _)| *s == svc).unwrap().1
}

fn no_extra(_: &str) -> String {
    String::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_is_promoted_by_its_own_job_in_dependency_order_two_at_a_time() {
    let _one = ONE_AT_A_TIME.lock().await;
    let site = Site::start("fleet-k8s-order").await;
    let fleet = site.fleet("", &SERVICES, &no_extra);
    let (most, watcher) = site.watch_active();
    let run = site.fleet_cmd("run", &fleet).finish(LIMIT).await;
    watcher.abort();
    assert_eq!(run.code, 0, "{}", run.output);
    let mut spans = BTreeMap::new();
    for (svc, _) in SERVICES {
        assert_eq!(site.primary(svc), 100, "{svc} not promoted");
        let r = site
            .record(svc)
            .expect("a run record in the state ConfigMap");
        assert_eq!(r["phase"], "promoted", "{svc}: {r}");
        spans.insert(svc, (time(&r["started"]), time(&r["ended"])));
    }
    for (svc, (start, _)) in &spans {
        for (dep, (_, end)) in &spans {
            if layer(dep) < layer(svc) || (*svc == "b1" && *dep == "b0") {
                assert!(end <= start, "{svc} started before {dep} was promoted");
            }
        }
    }
    let at_once = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&at_once), "{at_once} Jobs active at once");
    // One Job per service, created once, as the template says.
    assert_eq!(site.api.job_creates(), (SERVICES.len(), 0));
    assert!(
        site.jobs_by_service().values().all(|n| *n == 1),
        "{:?}",
        site.jobs_by_service()
    );
    let fleet_cm = site
        .api
        .object(&format!(
            "/api/v1/namespaces/{NS}/configmaps/cutover-fleet-site"
        ))
        .expect("the fleet's state ConfigMap");
    let state: Value =
        serde_json::from_str(fleet_cm["data"]["fleet.json"].as_str().unwrap()).unwrap();
    assert_eq!(state["outcome"]["exit"], 0, "{state}");
    let job = site
        .jobs()
        .into_iter()
        .find(|j| j["metadata"]["labels"]["cutover.dev/service"] == "b1")
        .unwrap();
    let labels = &job["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "cutover");
    assert_eq!(labels["cutover.dev/fleet"], "site");
    assert!(labels["cutover.dev/fleet-run"].is_string());
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("ConfigMap"), Some("cutover-fleet-site"))
    );
    assert_eq!(owner["uid"], fleet_cm["metadata"]["uid"]);
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "ghcr.io/example/cutover:test");
    assert_eq!(
        job["spec"]["template"]["spec"]["serviceAccountName"],
        "cutover-run"
    );
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["args"][3], "cutover/cutover-b1-run");
    assert_eq!(
        c["env"][0],
        json!({"name": "CUTOVER_RUN_ID", "value": format!("{}-b1", state["run_id"].as_str().unwrap())})
    );
    assert_eq!(
        job["spec"]["podFailurePolicy"]["rules"][1]["action"],
        "FailJob"
    );
    assert_eq!(job["status"]["succeeded"], 1);
    assert!(job["spec"]["activeDeadlineSeconds"].as_i64().unwrap() > 60);
    assert_eq!(c["resources"]["limits"]["memory"], "128Mi");
    // `fleet status` reads the ConfigMaps.
    let status = site
        .fleet_cmd("status", &fleet)
        .finish(Duration::from_secs(30))
        .await;
    assert_eq!(status.code, 0, "{}", status.output);
    assert!(
        status.output.contains("outcome: exit 0"),
        "{}",
        status.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_killed_mid_fleet_resumes_and_creates_no_job_twice() {
    let _one = ONE_AT_A_TIME.lock().await;
    let site = Site::start("fleet-k8s-kill").await;
    let fleet = site.fleet("", &SERVICES, &no_extra);
    let mut first = site.fleet_cmd("run", &fleet).spawn();
    // Killed while a layer-1 Job runs.
    wait_until("a layer-1 Job running", LIMIT, || {
        site.jobs().iter().any(|j| {
            j["metadata"]["labels"]["cutover.dev/service"]
                .as_str()
                .is_some_and(|s| s.starts_with('b'))
                && j["status"]["active"].as_i64() == Some(1)
        })
    })
    .await;
    // A second orchestrator of the same fleet is refused while the first holds the Lease.
    let second = site
        .fleet_cmd("run", &fleet)
        .finish(Duration::from_secs(60))
        .await;
    assert_eq!(second.code, 2, "{}", second.output);
    assert!(second.output.contains("another"), "{}", second.output);
    first.kill().await;
    let before = site.jobs().len();
    let run = site.fleet_cmd("run", &fleet).finish(LIMIT).await;
    assert_eq!(run.code, 0, "{}\n{}", first.output(), run.output);
    assert!(run.output.contains("resuming run"), "{}", run.output);
    for (svc, _) in SERVICES {
        assert_eq!(site.primary(svc), 100, "{svc} not promoted");
    }
    let (created, refused) = site.api.job_creates();
    assert_eq!(
        created,
        SERVICES.len(),
        "Jobs created (refused as existing: {refused})"
    );
    assert!(
        refused >= 1,
        "the running Job was adopted through AlreadyExists"
    );
    assert!(before >= 3, "killed with {before} Jobs created");
    assert!(
        site.jobs_by_service().values().all(|n| *n == 1),
        "{:?}",
        site.jobs_by_service()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_one_breach_rolls_the_fleet_back_and_no_later_job_is_created() {
    let _one = ONE_AT_A_TIME.lock().await;
    let site = Site::start("fleet-k8s-breach").await;
    site.exporters["b0"].on_weight(
        50,
        0,
        Behaviour {
            error_rate: 0.2,
            ..Behaviour::default()
        },
    );
    let fleet = site.fleet("on_failure: rollback_fleet", &SERVICES, &no_extra);
    let run = site.fleet_cmd("run", &fleet).finish(LIMIT).await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert!(run.output.contains("b0` did not promote"), "{}", run.output);
    for (svc, layer) in SERVICES {
        assert_eq!(
            site.primary(svc),
            0,
            "{svc} still sends traffic to the primary"
        );
        if layer == 2 {
            assert_eq!(
                site.exporters[svc].max_weight_seen(),
                0,
                "{svc} got traffic"
            );
        }
    }
    let by = site.jobs_by_service();
    assert!(
        !by.contains_key("c0") && !by.contains_key("c1"),
        "a layer-2 Job was created: {by:?}"
    );
    let b0 = site.record("b0").unwrap();
    assert_eq!(b0["phase"], "rolled_back", "{b0}");
    for svc in ["a0", "a1"] {
        assert_eq!(
            site.exporters[svc].max_weight_seen(),
            100,
            "{svc} was promoted first"
        );
    }
    // The fleet rolled back every promoted service, verified, later layers first.
    let state = site.fleet_state();
    let mut rolled: Vec<(SystemTime, &str)> = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[1]["phase"] == "rolled_back")
        .map(|s| {
            assert_eq!(s[1]["ok"], true, "{s}");
            let svc = SERVICES.iter().find(|(n, _)| *n == s[0]).unwrap().0;
            (time(&s[1]["at"]), svc)
        })
        .collect();
    rolled.sort();
    let names: Vec<&str> = rolled.iter().map(|r| r.1).collect();
    assert!(names.contains(&"a0") && names.contains(&"a1"), "{state}");
    assert!(
        rolled.windows(2).all(|w| layer(w[0].1) >= layer(w[1].1)),
        "not in reverse dependency order: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_exits_10_stops_the_fleet_and_pages() {
    let _one = ONE_AT_A_TIME.lock().await;
    let site = Site::start("fleet-k8s-page").await;
    // a0 breaches at 50 %, and from then on nothing may write the routes: its rollback
    // cannot be applied.
    site.exporters["a0"].on_weight(
        50,
        0,
        Behaviour {
            error_rate: 0.2,
            ..Behaviour::default()
        },
    );
    let two = [("a0", 0), ("b0", 1)];
    let fleet = site.fleet("", &two, &|_| {
        "rollback: { retry_interval: 1s, max_attempts: 2 }\n".into()
    });
    let mut run = site.fleet_cmd("run", &fleet).spawn();
    let api = site.api.clone();
    wait_until("a0 at 50 %", LIMIT, || site.primary("a0") == 50).await;
    api.forbid("update", "httproutes");
    api.forbid("patch", "httproutes");
    let done = run.wait_exit(LIMIT).await;
    assert_eq!(done.code, 10, "{}", done.output);
    assert!(done.output.contains("PAGE NOW"), "{}", done.output);
    let by = site.jobs_by_service();
    assert!(!by.contains_key("b0"), "b0's Job was created: {by:?}");
    let a0 = site
        .jobs()
        .into_iter()
        .find(|j| j["metadata"]["labels"]["cutover.dev/service"] == "a0")
        .unwrap();
    let failed = a0["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .expect("the Job failed");
    assert_eq!(failed["reason"], "PodFailurePolicy", "{failed}");
    assert!(
        failed["message"].as_str().unwrap().contains("exit code 10"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_abort_through_the_configmap_rolls_the_running_job_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let site = Site::start("fleet-k8s-abort").await;
    let two = [("a0", 0), ("b0", 1)];
    let fleet = site.fleet("", &two, &no_extra);
    let mut run = site.fleet_cmd("run", &fleet).spawn();
    wait_until("a0 at 50 %", LIMIT, || site.primary("a0") == 50).await;
    let abort = site
        .fleet_cmd("abort", &fleet)
        .args(["--as", "oncall"])
        .finish(Duration::from_secs(60))
        .await;
    assert_eq!(abort.code, 0, "{}", abort.output);
    let done = run.wait_exit(LIMIT).await;
    assert_eq!(done.code, 4, "{}", done.output);
    assert_eq!(
        site.primary("a0"),
        0,
        "a0 still sends traffic to the primary"
    );
    let a0 = site.record("a0").unwrap();
    assert_eq!(a0["phase"], "aborted", "{a0}");
    assert!(!site.jobs_by_service().contains_key("b0"));
    assert!(
        site.fleet_state()["reason"]
            .as_str()
            .is_some_and(|r| r.contains("oncall")),
        "{}",
        site.fleet_state()
    );
}

#[test]
fn the_shipped_fleet_rbac_grants_the_orchestrator_only_what_it_uses() {
    let text =
        std::fs::read_to_string(cutover_tests::workspace().join("deploy/fleet.yaml")).unwrap();
    let docs: Vec<Value> = text
        .split("\n---")
        .filter_map(|d| serde_norway::from_str::<Value>(d).ok())
        .filter(|d| d.is_object())
        .collect();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ConfigMap",
            "Lease",
            "Role",
            "RoleBinding",
            "Job"
        ]
    );
    let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    for rule in role["rules"].as_array().unwrap() {
        let resource = rule["resources"][0].as_str().unwrap();
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let allowed: &[&str] = match resource {
            "jobs" => &["create", "get", "list", "watch"],
            "pods" => &["get", "list"],
            // By name only: its own state and Lease, the services' run records.
            "configmaps" | "leases" => {
                assert!(rule["resourceNames"].is_array(), "{rule}");
                &["get", "update"]
            }
            other => panic!("the orchestrator needs no {other}"),
        };
        assert!(verbs.iter().all(|v| allowed.contains(v)), "{rule}");
    }
    // The names the orchestrator uses (controller/src/fleet/kubernetes.rs).
    for kind in ["ConfigMap", "Lease"] {
        let d = docs.iter().find(|d| d["kind"] == kind).unwrap();
        assert_eq!(d["metadata"]["name"], "cutover-fleet-site");
    }
    let job = docs.iter().find(|d| d["kind"] == "Job").unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"],
        json!([
            "fleet",
            "run",
            "/etc/cutover-fleet/fleet.yaml",
            "--executor",
            "kubernetes"
        ])
    );
}
