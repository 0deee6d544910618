//! End to end on Kubernetes objects: kube-rs's real client, through a generated kubeconfig,
//! against the API-server emulation in `tests/src/kube_api.rs`, with the gates judged by a
//! real Prometheus scraping a workload that follows the object's weights.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cutover_tests::cli::{Cutover, Finished, primary_history};
use cutover_tests::env::{Env, RUN_LIMIT};
use cutover_tests::exporter::Behaviour;
use cutover_tests::kube_api::KubeApi;
use cutover_tests::{race, silent_server, wait_until};
use serde_json::{Value, json};

const VS: &str = "/apis/networking.istio.io/v1/namespaces/production/virtualservices/checkout";
const ROUTE: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/production/httproutes/checkout";

/// A VirtualService as a team runs it: several routes, matches, headers, retries, a mirror.
fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": "production", "uid": "6a1f0c2e-1111-4c5e-9d3b-0d7e0a1b2c3d",
            "generation": 7, "creationTimestamp": "2026-10-01T08:00:00Z",
            "labels": {"app": "checkout", "team": "payments"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"spec\":{}}"}},
        "spec": {
            "hosts": ["checkout.production.svc.cluster.local", "checkout.example.com"],
            "gateways": ["mesh", "istio-system/public"],
            "http": [
                {"name": "healthz", "match": [{"uri": {"exact": "/healthz"}}],
                 "route": [{"destination": {"host": "checkout.production.svc.cluster.local", "subset": "primary", "port": {"number": 8080}}}]},
                {"name": "beta-testers", "match": [{"headers": {"x-beta": {"exact": "1"}}}],
                 "route": [{"destination": {"host": "checkout.production.svc.cluster.local", "subset": "primary"}}],
                 "retries": {"attempts": 2, "perTryTimeout": "1s"}},
                {"name": "primary-dr",
                 "route": [
                    {"destination": {"host": "checkout.production.svc.cluster.local", "subset": "primary"}, "weight": 0,
                     "headers": {"request": {"set": {"x-site": "primary"}}}},
                    {"destination": {"host": "checkout.production.svc.cluster.local", "subset": "dr"}, "weight": 100,
                     "headers": {"request": {"set": {"x-site": "dr"}}}}],
                 "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset,connect-failure"},
                 "timeout": "10s",
                 "mirror": {"host": "checkout-shadow.production.svc.cluster.local"}, "mirrorPercentage": {"value": 1.0},
                 "corsPolicy": {"allowOrigins": [{"exact": "https://shop.example.com"}], "allowMethods": ["GET", "POST"]}}
            ]
        }
    })
}

/// An HTTPRoute with two rules; the `api` rule is the one cut over.
fn http_route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "checkout", "namespace": "production", "uid": "0b9e...-route", "generation": 3,
            "labels": {"app": "checkout"}},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["checkout.example.com"],
            "rules": [
                {"name": "static", "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                 "backendRefs": [{"name": "cdn-origin", "port": 80}]},
                {"name": "api", "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                 "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-via", "value": "gw"}]}}],
                 "backendRefs": [
                    {"name": "checkout-primary", "port": 8080, "weight": 0},
                    {"name": "checkout-dr", "port": 8080, "weight": 100}],
                 "timeouts": {"request": "10s"}}
            ]
        }
    })
}

/// The object with what cutover may change blanked: the two weights, its annotations, and
/// the server-set resourceVersion and generation.
fn without_our_changes(mut o: Value, weights: &[&str]) -> Value {
    for w in weights {
        *o.pointer_mut(w).unwrap() = Value::Null;
    }
    let m = o["metadata"].as_object_mut().unwrap();
    m.remove("resourceVersion");
    m.remove("generation");
    if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
        a.retain(|k, _| !k.starts_with("cutover.dev/"));
    }
    if m.get("annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.is_empty())
    {
        m.remove("annotations");
    }
    o
}

/// A cluster: the API emulation holding a VirtualService and an HTTPRoute, a kubeconfig
/// for it, and a workload whose traffic follows the weights of the object at `path`.
struct Cluster {
    env: Env,
    api: Arc<KubeApi>,
}

impl std::ops::Deref for Cluster {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl Cluster {
    async fn start(name: &str, path: &'static str, weights: [&'static str; 2]) -> Cluster {
        let api = Arc::new(KubeApi::start(vec![virtual_service(), http_route()]).await);
        let mut env = Env::with_prometheus(name).await;
        // The mesh follows the object's weights.
        let a = api.clone();
        env.follow(Duration::from_millis(100), move || {
            let o = a.object(path);
            async move {
                let o = o?;
                let w = |p: &str| o.pointer(p).and_then(Value::as_u64).unwrap_or(0);
                Some((w(weights[0]), w(weights[1])))
            }
        });
        api.kubeconfig(&env.path("kubeconfig"));
        Cluster { env, api }
    }

    /// `cutover SUBCOMMAND POLICY --kubeconfig ...`.
    fn cutover(&self, subcommand: &str, policy: &Path) -> Cutover<'_> {
        self.env
            .cutover([subcommand])
            .arg(policy)
            .arg("--kubeconfig")
            .arg(self.path("kubeconfig"))
    }

    /// `cutover run POLICY --kubeconfig ... --state-file state.json`, to its end.
    async fn run(&self, policy: &Path) -> Finished {
        self.cutover("run", policy)
            .state_file(&self.path("state.json"))
            .finish(RUN_LIMIT)
            .await
    }

    /// The test policy on `backend` with these stages.
    fn policy_for(&self, backend: &str, stages: &[u8], extra: &str) -> PathBuf {
        self.env
            .policy()
            .backend(backend)
            .stages(stages)
            .extra(extra)
            .write()
    }
}

const ISTIO: &str = "  istio:\n    namespace: production\n    virtual_service: checkout\n    route: primary-dr\n    primary: { host: checkout.production.svc.cluster.local, subset: primary }\n    dr: { host: checkout.production.svc.cluster.local, subset: dr }";
const VS_WEIGHTS: [&str; 2] = ["/spec/http/2/route/0/weight", "/spec/http/2/route/1/weight"];
const GATEWAY: &str = "  gateway_api:\n    namespace: production\n    http_route: checkout\n    rule: api\n    primary: { name: checkout-primary, port: 8080 }\n    dr: { name: checkout-dr, port: 8080 }";
const ROUTE_WEIGHTS: [&str; 2] = [
    "/spec/rules/1/backendRefs/0/weight",
    "/spec/rules/1/backendRefs/1/weight",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_service_is_promoted_changing_two_numbers_and_nothing_else() {
    let cluster = Cluster::start("k8s-istio", VS, VS_WEIGHTS).await;
    let before = cluster.api.object(VS).unwrap();
    let run = cluster
        .run(&cluster.policy_for(ISTIO, &[10, 50, 100], ""))
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 50, 100]);
    let after = cluster.api.object(VS).unwrap();
    assert_eq!(after.pointer(VS_WEIGHTS[0]), Some(&json!(100)));
    assert_eq!(after.pointer(VS_WEIGHTS[1]), Some(&json!(0)));
    // Byte-level: everything else, serialized, is what it was.
    let (b, a) = (
        without_our_changes(before, &VS_WEIGHTS),
        without_our_changes(after.clone(), &VS_WEIGHTS),
    );
    assert_eq!(
        serde_json::to_string(&b).unwrap(),
        serde_json::to_string(&a).unwrap(),
        "fields beyond the weights changed"
    );
    assert!(
        after["metadata"]["annotations"]["cutover.dev/run"]
            .as_str()
            .unwrap()
            .contains("stage 3/3")
    );
    let reasons: Vec<String> = cluster
        .api
        .events()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            "CutoverStarted",
            "StageStarted",
            "StageStarted",
            "StageStarted",
            "Promoted"
        ],
        "Events on the VirtualService"
    );
    assert!(cluster.api.events().iter().all(
        |e| e["regarding"]["name"] == "checkout" && e["regarding"]["kind"] == "VirtualService"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_route_is_promoted_and_a_breach_on_a_virtual_service_rolls_back() {
    let cluster = Cluster::start("k8s-gw", ROUTE, ROUTE_WEIGHTS).await;
    let before = cluster.api.object(ROUTE).unwrap();
    let run = cluster
        .run(&cluster.policy_for(GATEWAY, &[25, 100], ""))
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    let after = cluster.api.object(ROUTE).unwrap();
    assert_eq!(after.pointer(ROUTE_WEIGHTS[0]), Some(&json!(100)));
    assert_eq!(
        serde_json::to_string(&without_our_changes(before, &ROUTE_WEIGHTS)).unwrap(),
        serde_json::to_string(&without_our_changes(after, &ROUTE_WEIGHTS)).unwrap()
    );
    drop(cluster);

    let cluster = Cluster::start("k8s-breach", VS, VS_WEIGHTS).await;
    cluster.exporter().on_weight(
        50,
        0,
        Behaviour {
            error_rate: 0.05,
            ..Behaviour::default()
        },
    );
    let run = cluster
        .run(&cluster.policy_for(ISTIO, &[10, 50, 100], ""))
        .await;
    assert_eq!(run.code, 1, "{}", run.output);
    let after = cluster.api.object(VS).unwrap();
    assert_eq!(after.pointer(VS_WEIGHTS[0]), Some(&json!(0)));
    assert_eq!(after.pointer(VS_WEIGHTS[1]), Some(&json!(100)));
    assert!(
        cluster
            .api
            .events()
            .iter()
            .any(|e| e["reason"] == "RollingBack" && e["type"] == "Warning")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_writer_causes_a_retry_not_a_lost_update() {
    let cluster = Cluster::start("k8s-conflict", VS, VS_WEIGHTS).await;
    // Another controller changes the beta route's retries between our read and our write.
    cluster.api.foreign_write_before_next_update(json!({"metadata": {"labels": {"touched-by": "other-controller"}},
        "spec": {"http": virtual_service()["spec"]["http"].as_array().unwrap().iter().enumerate().map(|(i, r)| {
            let mut r = r.clone();
            if i == 1 { r["retries"]["attempts"] = json!(5); }
            r
        }).collect::<Vec<_>>()}}));
    let run = cluster
        .cutover("run", &cluster.policy_for(ISTIO, &[50, 100], ""))
        .state_file(&cluster.path("state.json"))
        .env("RUST_LOG", "cutover=info,cutover_backends=warn")
        .finish(RUN_LIMIT)
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    let after = cluster.api.object(VS).unwrap();
    assert_eq!(
        after["metadata"]["labels"]["touched-by"], "other-controller",
        "the other writer's change survived"
    );
    assert_eq!(after["spec"]["http"][1]["retries"]["attempts"], 5);
    assert_eq!(after.pointer(VS_WEIGHTS[0]), Some(&json!(100)));
    let conflicts = cluster.api.log().iter().filter(|l| l.code == 409).count();
    assert_eq!(conflicts, 1, "one stale write, answered 409");
    assert!(
        run.output.contains("resourceVersion conflict"),
        "{}",
        run.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_and_missing_objects_say_which_verb_on_which_object_and_the_fix() {
    let cluster = Cluster::start("k8s-rbac", VS, VS_WEIGHTS).await;
    // Traffic is split, so the operator's rollback has something to write; it is refused.
    cluster.api.set_field(VS, VS_WEIGHTS[0], json!(50));
    cluster.api.set_field(VS, VS_WEIGHTS[1], json!(50));
    cluster.api.forbid("update", "virtualservices");
    let policy = cluster.policy_for(ISTIO, &[50, 100], "rollback:\n  max_attempts: 1\n");
    let run = cluster
        .cutover("rollback", &policy)
        .state_file(&cluster.path("state.json"))
        .finish(RUN_LIMIT)
        .await;
    assert_eq!(run.code, 10, "{}", run.output);
    assert!(
        run.output
            .contains("`update` on VirtualService production/checkout was refused"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains(
            r#"resources: ["virtualservices"], resourceNames: ["checkout"], verbs: ["update"]"#
        ),
        "{}",
        run.output
    );

    let missing = ISTIO.replace("virtual_service: checkout", "virtual_service: checkuot");
    let run = cluster
        .run(&cluster.policy_for(&missing, &[50, 100], ""))
        .await;
    assert_eq!(run.code, 3, "{}", run.output);
    assert!(
        run.output
            .contains("VirtualService production/checkuot was not found"),
        "{}",
        run.output
    );
    let wrong_route = ISTIO.replace("route: primary-dr", "route: primary");
    let run = cluster
        .run(&cluster.policy_for(&wrong_route, &[50, 100], ""))
        .await;
    assert_eq!(run.code, 3, "{}", run.output);
    assert!(
        run.output.contains("healthz, beta-testers, primary-dr"),
        "lists the routes there are: {}",
        run.output
    );
}

const STATE_CM: &str = "/api/v1/namespaces/cutover/configmaps/checkout-run";
/// The lock of the VirtualService route: a Lease in the object's namespace, named from it.
fn lease_path() -> String {
    let (_, name) = cutover_backends::lock::lease::lease_for(
        "VirtualService",
        "production",
        "checkout",
        "route primary-dr",
    );
    format!("/apis/coordination.k8s.io/v1/namespaces/production/leases/{name}")
}

/// The run state a Job keeps in its ConfigMap.
fn state_in_configmap(cluster: &Cluster) -> Value {
    serde_json::from_str(
        cluster.api.object(STATE_CM).unwrap()["data"]["state.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_keeps_its_state_in_a_configmap_holds_a_lease_and_survives_kill_9() {
    let cluster = Cluster::start("k8s-state", VS, VS_WEIGHTS).await;
    let policy = cluster.policy_for(ISTIO, &[25, 50, 100], "");
    let pod = || {
        cluster
            .cutover("run", &policy)
            .args(["--state-configmap", "cutover/checkout-run"])
            .args(["--lock-ttl", "6s"])
            .spawn()
    };
    let mut first = pod();
    // Wait until the first stage is written and recorded.
    wait_until("stage 1 written", Duration::from_secs(30), || {
        cluster
            .api
            .object(VS)
            .and_then(|o| o.pointer(VS_WEIGHTS[0]).and_then(Value::as_u64))
            == Some(25)
    })
    .await;
    let lease = cluster
        .api
        .object(&lease_path())
        .expect("a Lease is held during the run");
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(holder.contains(&format!("#{}", first.pid())), "{holder}");

    // A second controller on the same service is refused, naming the holder.
    let second = cluster
        .cutover("run", &policy)
        // Another Job, another state ConfigMap: the VirtualService's own lock refuses it.
        .args(["--state-configmap", "cutover/another-run"])
        .finish(RUN_LIMIT)
        .await;
    let text = &second.output;
    assert_eq!(second.code, 2, "{text}");
    assert!(
        text.contains(&format!("pid {}", first.pid())) && text.contains("cutover/checkout-run"),
        "names the holder and its state: {text}"
    );

    // kill -9, as a node drain does; the Job's next pod resumes from the ConfigMap.
    first.kill().await;
    let run_id = state_in_configmap(&cluster)["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let again = pod().wait_exit(Duration::from_secs(150)).await;
    assert_eq!(again.code, 0, "{}", again.output);
    let state = state_in_configmap(&cluster);
    assert_eq!(state["run_id"], run_id.as_str(), "the same run, resumed");
    assert_eq!(state["restarts"], 1);
    assert_eq!(state["phase"], "promoted");
    let history = primary_history(&state);
    assert_eq!(history.first(), Some(&25));
    assert_eq!(history.last(), Some(&100));
    assert!(
        history.windows(2).all(|w| w[0] <= w[1]),
        "no stage skipped or repeated out of order: {history:?}"
    );
    assert_eq!(
        cluster.api.object(&lease_path()).unwrap()["spec"]["holderIdentity"],
        Value::Null,
        "released at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_promoted_with_only_the_objects_and_verbs_cutover_manifests_grants() {
    // Given the Lease and the state ConfigMap `cutover manifests` emits, applied, and an API
    // server that refuses what the generated Roles do not grant (create and patch on them,
    // patch on the VirtualService),
    let cluster = Cluster::start("k8s-manifests", VS, VS_WEIGHTS).await;
    let policy = cluster.policy_for(ISTIO, &[25, 100], "");
    let (code, yaml) = cutover_tests::cli::cutover(&[
        "manifests",
        policy.to_str().unwrap(),
        "--namespace",
        "cutover",
    ]);
    assert_eq!(code, 0, "{yaml}");
    let mut applied = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&yaml) {
        let o: Value = serde::Deserialize::deserialize(doc).unwrap();
        if o["kind"] == "Lease" || o["metadata"]["name"] == "checkout-cutover-state" {
            applied.push(format!("{}/{}", o["kind"], o["metadata"]["name"]));
            cluster.api.insert(o);
        }
    }
    assert_eq!(applied.len(), 2, "{applied:?}");
    assert!(
        cluster.api.object(&lease_path()).is_some(),
        "the Lease the run takes"
    );
    for (verb, plural) in [
        ("create", "leases"),
        ("create", "configmaps"),
        ("patch", "leases"),
        ("patch", "configmaps"),
        ("patch", "virtualservices"),
    ] {
        cluster.api.forbid(verb, plural);
    }

    // when the Job's command runs,
    let done = cluster
        .cutover("run", &policy)
        .args(["--state-configmap", "cutover/checkout-cutover-state"])
        .finish(RUN_LIMIT)
        .await;

    // then it is promoted, its state is in the ConfigMap and the Lease is released.
    assert_eq!(done.code, 0, "{}", done.output);
    let state: Value = serde_json::from_str(
        cluster
            .api
            .object("/api/v1/namespaces/cutover/configmaps/checkout-cutover-state")
            .unwrap()["data"]["state.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state["phase"], "promoted");
    assert_eq!(
        cluster.api.object(&lease_path()).unwrap()["spec"]["holderIdentity"],
        Value::Null
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_with_different_state_configmaps_never_both_drive_one_route_in_20_races() {
    let cluster = Cluster::start("k8s-race", VS, VS_WEIGHTS).await;
    for round in 0..20 {
        // A Prometheus that does not answer at first keeps the winner in preflight, holding
        // the lock while the other Job looks; then preflight fails and nothing is written.
        let prom = silent_server(Duration::from_millis(1500)).await;
        let policy = cluster
            .policy_judged_by(&prom)
            .backend(ISTIO)
            .stages(&[10, 100])
            .at(cluster.path(&format!("race-{round}.yaml")))
            .write();
        let job = |cm: &str| {
            cluster
                .cutover("run", &policy)
                .args(["--state-configmap", cm])
                .command()
        };
        let results = race(
            job(&format!("cutover/job-a-{round}")),
            job(&format!("cutover/job-b-{round}")),
        )
        .await;
        cutover_tests::assert_one_refused(&results, round);
        assert_eq!(
            cluster.api.object(VS).unwrap().pointer(VS_WEIGHTS[0]),
            Some(&json!(0)),
            "round {round}: nothing was written"
        );
    }
}

/// The operator's commands, with the run's state in a ConfigMap: an approval waits and is
/// given through the ConfigMap, the Job's run id comes from the environment (the Job's UID
/// in a pod), a killed pod of the same Job resumes its own run, and an abort rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_go_through_the_state_configmap_and_a_job_keeps_its_run_id() {
    let cluster = Cluster::start("k8s-operator", VS, VS_WEIGHTS).await;
    let policy = cluster.policy_for(ISTIO, &[25, 50, 100], "");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("  - weight: 50\n", "  - weight: 50\n    approval: manual\n");
    std::fs::write(&policy, text).unwrap();
    let weight = || {
        cluster
            .api
            .object(VS)
            .and_then(|o| o.pointer(VS_WEIGHTS[0]).and_then(Value::as_u64))
    };
    let pod = || {
        cluster
            .cutover("run", &policy)
            .args(["--state-configmap", "cutover/checkout-run"])
            .args(["--lock-ttl", "6s"])
            .env("CUTOVER_RUN_ID", "job-uid-1")
            .spawn()
    };
    let command = |cmd: &'static str, args: &'static [&'static str]| {
        cluster
            .cutover(cmd, &policy)
            .args(["--state-configmap", "cutover/checkout-run"])
            .args(args)
            .finish(Duration::from_secs(60))
    };
    let mut first = pod();
    wait_until("awaiting approval", Duration::from_secs(90), || {
        cluster
            .api
            .object(STATE_CM)
            .and_then(|cm| cm["data"]["state.json"].as_str().map(str::to_string))
            .is_some_and(|s| s.contains("\"awaiting\""))
    })
    .await;
    assert_eq!(state_in_configmap(&cluster)["run_id"], "job-uid-1");
    // The node goes away: the Job's next pod, same run id, resumes its own run and waits.
    first.kill().await;
    let mut second = pod();
    wait_until("resumed", Duration::from_secs(60), || {
        state_in_configmap(&cluster)["restarts"] == 1
    })
    .await;
    let status = command("status", &["-o", "json"]).await;
    assert!(
        status.output.contains("\"awaiting_approval\""),
        "{}",
        status.output
    );
    assert_eq!(weight(), Some(25));
    let approve = command("approve", &["--as", "dba"]).await;
    assert_eq!(approve.code, 0, "{}", approve.output);
    wait_until("50 % written", Duration::from_secs(20), || {
        weight() == Some(50)
    })
    .await;
    let abort = command("abort", &["--as", "sre", "--reason", "game day over"]).await;
    assert_eq!(abort.code, 0, "{}", abort.output);
    let end = second.wait_exit(RUN_LIMIT).await;
    assert_eq!(end.code, 4, "{}", end.output);
    assert_eq!(weight(), Some(0));
    let state = state_in_configmap(&cluster);
    assert_eq!(state["run_id"], "job-uid-1");
    let actions: Vec<&str> = state["operator"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["command"]["by"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["dba", "sre"]);
    // Acknowledged commands leave the mailbox.
    let cm = cluster.api.object(STATE_CM).unwrap();
    let posted: Vec<Value> =
        serde_json::from_str(cm["data"]["commands.json"].as_str().unwrap_or("[]")).unwrap();
    assert!(posted.is_empty(), "{posted:?}");
}
